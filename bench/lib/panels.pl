#!/usr/bin/env perl
# bench/lib/panels.pl — times every dashboard panel over the last 7 days,
# as Grafana would send it (rollups) and the same panel computed from raw
# events (the rollup tables replaced by bench.raw_* over the window), and
# says whether both give the same rows.  Called by bench/rollups.sh.
#
#   panels.pl SRC_DIR LABEL PSQL-ARGS...
use strict;
use warnings;
use File::Temp qw(tempdir);
use List::Util qw(max);

my ($src, $label, @psql) = @ARGV;
unshift @INC, "$src/t/lib";
require rollups::GrafanaSql;
rollups::GrafanaSql->import(qw(load_dashboards expand rfc3339nano));

my $to = time();
my $from = $to - 7 * 86400;
# 7 days on a panel ~1500 px wide: Grafana's rounded interval is 5m
my $interval = 300;
my $dir = tempdir(CLEANUP => 1);

# Runs sql $runs times; returns (median ms, sorted output of the first run).
sub time_query
{
	my ($sql, $runs) = @_;
	open my $fh, '>', "$dir/q.sql" or die;
	print $fh "\\timing on\n\\o $dir/out\n$sql;\n\\o /dev/null\n";
	print $fh "$sql;\n" for 2 .. $runs;
	close $fh;
	my $out = `psql @psql -X -q -A -t -v ON_ERROR_STOP=1 -f $dir/q.sql 2>&1`;
	die "query failed:\n$out\n$sql\n" if $? != 0;
	my @ms = sort { $a <=> $b } ($out =~ /^Time: ([\d.]+) ms/mg);
	open my $res, '<', "$dir/out" or die;
	my @rows = sort <$res>;
	close $res;
	return ($ms[ $#ms / 2 ], join('', @rows));
}

sub raw_version
{
	my ($sql) = @_;
	my ($f, $t) = map { "'" . rfc3339nano($_) . "'" } $from, $to;
	$sql =~ s/runra_obs\.sandbox_totals\(/bench.raw_sandbox_totals(/g;
	$sql =~ s/runra_obs\.rollup_1h_sandbox(?:_live)?\b/bench.raw('1 hour', true, $f, $t)/g;
	$sql =~ s/runra_obs\.rollup_1h(?:_live)?\b/bench.raw('1 hour', false, $f, $t)/g;
	$sql =~ s/runra_obs\.rollup_5m(?:_live)?\b/bench.raw('5 minutes', false, $f, $t)/g;
	$sql =~ s/runra_obs\.ingest_1m(?:_live)?\b/bench.raw_ingest($f, $t)/g;
	return $sql;
}

printf "%-62s %10s %10s %8s %s\n", "panel ($label events, 7 days)", 'rollup ms', 'raw ms', 'raw/rollup', 'same rows';
print "(rollup: median of 3 runs; raw: one run)\n";
my ($worst, $n) = (0, 0);
for my $dash (load_dashboards("$src/dashboards"))
{
	my %vars = map { $_->{name} => $_ } @{ $dash->{templating}{list} };
	my %selected = map { $_ => { all => 1, values => [], options => [] } } keys %vars;
	$selected{audit_sandbox} = { values => ['sb_1'] } if $vars{audit_sandbox};
	my $ctx = { from => $from, to => $to, interval => $interval, variables => \%vars, selected => \%selected };
	for my $var (@{ $dash->{templating}{list} })
	{
		my ($ms) = time_query(expand($var->{query}, $ctx), 3);
		printf "%-62s %10.1f\n", "$dash->{uid} / variable \$$var->{name}", $ms;
	}
	for my $panel (@{ $dash->{panels} })
	{
		for my $target (@{ $panel->{targets} })
		{
			my $sql = expand($target->{rawSql}, $ctx);
			my $raw = raw_version($sql);
			my ($ms, $rows) = time_query($sql, 3);
			# the raw baseline once: at 10M events it takes seconds per panel
			my ($raw_ms, $raw_rows) = $raw eq $sql ? ($ms, $rows) : time_query($raw, 1);
			my $same = $raw eq $sql ? 'reads raw' : ($rows eq $raw_rows ? 'yes' : 'NO');
			printf "%-62s %10.1f %10.1f %8.0fx %s\n", "$dash->{uid} / $panel->{title}",
			  $ms, $raw_ms, $raw_ms / ($ms || 0.001), $same;
			$worst = max($worst, $ms);
			$n++;
		}
	}
}
printf "%d panels; slowest panel on rollups: %.1f ms\n", $n, $worst;
