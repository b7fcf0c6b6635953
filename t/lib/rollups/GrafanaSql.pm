# rollups/GrafanaSql.pm — reads Grafana dashboards and expands their SQL
# the way Grafana does for its PostgreSQL datasource, so tests can run the
# exact text Grafana would send.
#
# Grafana expands a panel's rawSql in three steps, and so does expand():
#  1. the browser's template service replaces variables ($var, ${var},
#     ${var:format}, [[var]]), including the scoped $__interval and
#     $__interval_ms.  A variable that is multi-value or has "All" gets each
#     value quoted as an SQL literal (' doubled), joined by ','; a custom
#     all value is inserted as it is, unformatted; other variables raw.
#     (public/app/features/templating/template_srv.ts, and the SQL
#     datasource's interpolateVariable.)
#  2. the backend's sqleng.Interpolate: $__interval_ms, $__interval,
#     $__unixEpochFrom(), $__unixEpochTo().
#  3. the PostgreSQL macro engine (pkg/tsdb/grafana-postgresql-datasource/
#     macros.go): $__name(args) with args split on ',' and trimmed;
#     $__timeFilter(c) -> c BETWEEN 'from' AND 'to' (RFC 3339, UTC, nanosecond
#     fraction without trailing zeros); $__timeFrom() / $__timeTo() -> 'from' /
#     'to'; $__timeGroup(c, i) -> floor(extract(epoch from c)/S)*S with S the
#     interval in seconds printed as Go's %v prints a float64;
#     $__timeGroupAlias adds AS "time"; $__time(c) -> c AS "time".
#
# And how the tests run it as Grafana's datasource user would: a login role
# that is only a member of runra_obs_reader (reader_role), one query at a
# time (reader_query) or many in one session (reader_queries), with the
# context expand() needs built from a dashboard (grafana_context).
package rollups::GrafanaSql;

use strict;
use warnings;
use Carp;
use JSON::PP;
use POSIX qw(floor strftime);
use Exporter 'import';

our @EXPORT_OK = qw(load_dashboards expand go_float rfc3339nano parse_interval
  grafana_context reader_role reader_query reader_queries render);

# Every dashboard JSON file of a folder, decoded, with its file name.
sub load_dashboards
{
	my ($dir) = @_;
	my @files = sort glob("$dir/*.json");
	my @dashboards;
	for my $file (@files)
	{
		open my $fh, '<', $file or croak "cannot read $file: $!";
		local $/;
		my $d = JSON::PP->new->decode(<$fh>);
		close $fh;
		$d->{_file} = $file;
		push @dashboards, $d;
	}
	return @dashboards;
}

# Go's %v for a float64 (strconv 'g' with the shortest precision): the
# shortest digits that read back as the same number, in exponent form
# (1e+06, 2.592e+06) when the decimal exponent is below -4 or at least 6.
sub go_float
{
	my ($x) = @_;
	return '0' if $x == 0;
	my $s;
	for my $p (1 .. 17)
	{
		$s = sprintf('%.*e', $p - 1, $x);
		last if $s + 0 == $x;
	}
	my ($mant, $exp) = $s =~ /^(-?[\d.]+)e([-+]\d+)$/;
	$exp += 0;
	$mant =~ s/\.?0+$// if $mant =~ /\./;
	if ($exp < -4 || $exp >= 6)
	{
		return sprintf('%se%s%02d', $mant, $exp < 0 ? '-' : '+', abs($exp));
	}
	my $digits = $mant;
	my $neg = $digits =~ s/^-//;
	$digits =~ s/\.//;
	my $point = 1 + $exp;
	my $out;
	if ($point <= 0) { $out = '0.' . ('0' x -$point) . $digits; }
	elsif ($point >= length $digits) { $out = $digits . ('0' x ($point - length $digits)); }
	else { $out = substr($digits, 0, $point) . '.' . substr($digits, $point); }
	return ($neg ? '-' : '') . $out;
}

# Go's time.RFC3339Nano of a UTC epoch (seconds, may have a fraction).
sub rfc3339nano
{
	my ($epoch) = @_;
	my $whole = floor($epoch);
	my $ns = sprintf('%09d', int(($epoch - $whole) * 1e9 + 0.5));
	$ns =~ s/0+$//;
	return strftime('%Y-%m-%dT%H:%M:%S', gmtime $whole) . ($ns eq '' ? '' : ".$ns") . 'Z';
}

# gtime.ParseInterval for the forms dashboards use: 10s, 5m, 1h, 1d, 1w, 100ms.
sub parse_interval
{
	my ($text) = @_;
	my %unit = (ms => 0.001, s => 1, m => 60, h => 3600, d => 86400, w => 604800, y => 31536000);
	my ($n, $u) = $text =~ /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)$/
	  or croak "cannot parse interval '$text'";
	return $n * $unit{$u};
}

# gtime.FormatInterval: the largest unit that divides the interval.
sub format_interval
{
	my ($s) = @_;
	for my $u ([ 'y', 31536000 ], [ 'w', 604800 ], [ 'd', 86400 ], [ 'h', 3600 ], [ 'm', 60 ], [ 's', 1 ])
	{
		return int($s / $u->[1]) . $u->[0] if $s >= $u->[1] && int($s) == $s && $s % $u->[1] == 0;
	}
	return int($s * 1000) . 'ms';
}

sub quote_literal
{
	my ($v) = @_;
	$v =~ s/'/''/g;
	return "'$v'";
}

# Step 1: one variable's text, as the template service formats it.
sub format_variable
{
	my ($var, $selected, $format) = @_;
	my @values = @{ $selected->{values} };
	if ($selected->{all})
	{
		return $var->{allValue} if defined $var->{allValue} && $var->{allValue} ne '';
		@values = @{ $selected->{options} };
	}
	if (defined $format && $format eq 'sqlstring')
	{
		return join(',', map { quote_literal($_) } @values);
	}
	croak "format $format is not supported here" if defined $format;
	if ($var->{multi} || $var->{includeAll})
	{
		return join(',', map { quote_literal($_) } @values);
	}
	return $values[0];
}

# Step 3: one macro.
sub macro
{
	my ($name, $args, $ctx) = @_;
	my $from = rfc3339nano($ctx->{from});
	my $to = rfc3339nano($ctx->{to});
	if ($name eq '__time') { return "$args->[0] AS \"time\""; }
	if ($name eq '__timeEpoch') { return "extract(epoch from $args->[0]) as \"time\""; }
	if ($name eq '__timeFilter') { return "$args->[0] BETWEEN '$from' AND '$to'"; }
	if ($name eq '__timeFrom') { return "'$from'"; }
	if ($name eq '__timeTo') { return "'$to'"; }
	if ($name eq '__timeGroup' || $name eq '__timeGroupAlias')
	{
		croak "$name needs a column and an interval" if @$args < 2;
		(my $i = $args->[1]) =~ s/^'+|'+$//g;
		my $s = go_float(parse_interval($i));
		my $expr = "floor(extract(epoch from $args->[0])/$s)*$s";
		return $name eq '__timeGroupAlias' ? "$expr AS \"time\"" : $expr;
	}
	if ($name eq '__unixEpochFilter')
	{
		return sprintf('%s >= %d AND %s <= %d', $args->[0], floor($ctx->{from}), $args->[0], floor($ctx->{to}));
	}
	croak "unknown macro \$$name";
}

# The SQL Grafana would send for `sql`, given ctx: from, to (epoch
# seconds), interval (seconds), variables (name => definition) and
# selected (name => {values => [...], all => bool, options => [...]}).
sub expand
{
	my ($sql, $ctx) = @_;
	my %scoped = (
		__interval => format_interval($ctx->{interval}),
		__interval_ms => int($ctx->{interval} * 1000));

	# 1. template variables (Grafana's variableRegex)
	$sql =~ s{\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^\}]+))?\}}{
		my ($name, $format) = (defined $1 ? $1 : defined $2 ? $2 : $4, defined $3 ? $3 : $5);
		if (exists $scoped{$name}) { $scoped{$name} }
		elsif (my $var = $ctx->{variables}{$name})
		{
			croak "variable \$$name has no selection" unless $ctx->{selected}{$name};
			format_variable($var, $ctx->{selected}{$name}, $format);
		}
		else { $& }
	}ge;

	# 2. the backend's global substitutions
	$sql =~ s/\$__interval_ms/$scoped{__interval_ms}/g;
	$sql =~ s/\$__interval/$scoped{__interval}/g;
	$sql =~ s/\$__unixEpochFrom\(\)/floor($ctx->{from})/ge;
	$sql =~ s/\$__unixEpochTo\(\)/floor($ctx->{to})/ge;

	# 3. macros
	$sql =~ s{\$(\w+)\(([^\)]*)\)}{
		my $name = $1;
		my @args = map { s/^ +| +$//gr } split /,/, $2, -1;
		macro($name, \@args, $ctx);
	}ge;
	croak "unexpanded \$ left in: $sql" if $sql =~ /\$__\w+/;
	return $sql;
}

# Context for expand() on a dashboard: from, to (epoch seconds), interval
# (seconds), and select (name => {values => [...]} or {all => 1}); a
# variable not in select is on All.
sub grafana_context
{
	my ($dash, %opt) = @_;
	my %vars = map { $_->{name} => $_ } @{ $dash->{templating}{list} };
	my %selected;
	for my $name (keys %vars)
	{
		$selected{$name} = $opt{select}{$name} // { all => 1, values => [] };
		$selected{$name}{options} //= [];
	}
	return { from => $opt{from}, to => $opt{to}, interval => $opt{interval},
		variables => \%vars, selected => \%selected };
}

# A login role on $node as Grafana's datasource user is set up: only a
# member of runra_obs_reader, read-only, in UTC.
sub reader_role
{
	my ($node, $role) = @_;
	$node->safe_psql('postgres', qq{
		CREATE ROLE $role LOGIN IN ROLE runra_obs_reader;
		ALTER ROLE $role SET default_transaction_read_only = on;
		ALTER ROLE $role SET timezone = 'UTC';});
	return $role;
}

my $FS = "\x1f";

# Runs psql on $node as $role with column names, fields split by $FS.
sub psql_as
{
	my ($node, $role, $sql, $stop) = @_;
	my ($out, $err);
	my $rc = $node->psql('postgres', $sql,
		stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role, '-P', 'tuples_only=off', '-P', 'footer=off',
			'-F', $FS, '-v', "ON_ERROR_STOP=$stop" ]);
	return ($rc, $out, $err);
}

# psql's unaligned output of one query: (columns, rows).
sub parse_result
{
	my ($out) = @_;
	my @lines = split /\n/, $out, -1;
	pop @lines while @lines && $lines[-1] eq '';
	my @columns = split /$FS/, shift(@lines) // '', -1;
	my @rows = map { [ split /$FS/, $_, -1 ] } @lines;
	return (\@columns, \@rows);
}

# Runs one query as $role; returns (columns, rows) or dies with the error.
sub reader_query
{
	my ($node, $role, $sql) = @_;
	my ($rc, $out, $err) = psql_as($node, $role, $sql, 1);
	die "query failed: $err\n$sql\n" if $rc != 0 || $err =~ /ERROR/;
	return parse_result($out);
}

# Runs many queries as $role, one after the other in one session (as
# Grafana's connection pool would), so a test can run hundreds without a
# psql each.  Returns one hash per query: {columns, rows}, or {error}.
sub reader_queries
{
	my ($node, $role, @sqls) = @_;
	my $script = '';
	for my $i (0 .. $#sqls)
	{
		$script .= "\\echo \@\@begin $i\n$sqls[$i]\n;\n\\echo \@\@end $i :ERROR\n"
		  . "\\if :ERROR\n\\echo \@\@error $i :LAST_ERROR_MESSAGE\n\\endif\n";
	}
	$script .= "\\echo \@\@done\n";    # psql() chomps the last newline
	my ($rc, $out, $err) = psql_as($node, $role, $script, 0);
	my @results;
	while ($out =~ /^\@\@begin (\d+)\n(.*?)^\@\@end \1 (true|false)\n(?:\@\@error \1 ([^\n]*)\n)?/msg)
	{
		my ($i, $text, $failed, $error) = ($1, $2, $3, $4);
		if ($failed eq 'true') { $results[$i] = { error => $error // $err }; next; }
		my ($columns, $rows) = parse_result($text);
		$results[$i] = { columns => $columns, rows => $rows };
	}
	$results[$_] //= { error => "no answer (psql: $err)" } for 0 .. $#sqls;
	return @results;
}

# Rows as '|'-joined text.
sub render
{
	my ($rows) = @_;
	return [ map { join('|', @$_) } @$rows ];
}

1;
