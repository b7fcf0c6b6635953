# NpmClients — the real clients from the npm registry that TAP tests send
# with (OpenTelemetry JS exporters, @axiomhq/js, pg) and the official OTLP
# definitions that decode what runra_obs forwards.  test/npm/package.json
# and its lock say which versions; they are installed once per lock file
# into a cache outside the clone (RUNRA_NPM_CACHE, default
# ~/.cache/runra_obs), so a fresh clone pays for the download only once.
#
#     my $clients = npm_clients_or_skip();   # skip_all, with why, if unreachable
#     my ($ok, $out) = node_script($clients, $js_text, KEY => 'value');
#
# A test that cannot get its clients is skipped with the reason, never
# passed silently.
package NpmClients;
use strict;
use warnings;
use Exporter 'import';
use Digest::MD5 qw(md5_hex);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Spec;
use File::Temp qw(tempfile);
use IPC::Run;
use Test::More;

our @EXPORT = qw(npm_clients npm_clients_or_skip node_script);

my $spec_dir = File::Spec->rel2abs(dirname(__FILE__) . '/../../test/npm');

sub _slurp
{
	my ($path) = @_;
	open my $fh, '<', $path or die "cannot read $path: $!";
	local $/;
	return scalar <$fh>;
}

# The folder whose node_modules holds the clients, or (undef, why not).
sub npm_clients
{
	for my $tool (qw(node npm))
	{
		return (undef, "$tool is not installed (scripts/test installs it with apt-get)")
		  unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
	}
	my $lock = _slurp("$spec_dir/package-lock.json");
	my $root = $ENV{RUNRA_NPM_CACHE} // (($ENV{HOME} // '/tmp') . '/.cache/runra_obs');
	my $dir = "$root/npm-" . substr(md5_hex($lock . _slurp("$spec_dir/package.json")), 0, 12);
	return ($dir) if -f "$dir/.installed";

	# install beside, then rename: a half-finished install is never used
	my $tmp = "$dir.tmp$$";
	remove_tree($tmp);
	make_path($tmp);
	for my $f (qw(package.json package-lock.json))
	{
		open my $out, '>', "$tmp/$f" or die "cannot write $tmp/$f: $!";
		print $out _slurp("$spec_dir/$f");
		close $out;
	}
	my ($stdout, $stderr) = ('', '');
	my $ok = IPC::Run::run(
		[ 'npm', 'ci', '--no-audit', '--no-fund', '--ignore-scripts', '--prefix', $tmp ],
		'>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout(600));
	if (!$ok)
	{
		remove_tree($tmp);
		my @last = grep { /\S/ } split /\n/, $stderr;
		return (undef, "npm ci of test/npm failed (is the npm registry reachable?): "
			  . join(' | ', @last[ -3 .. -1 ]));
	}
	open my $mark, '>', "$tmp/.installed" or die "cannot write marker: $!";
	close $mark;
	remove_tree($dir);
	rename $tmp, $dir or die "cannot rename $tmp to $dir: $!";
	return ($dir);
}

# npm_clients, or skip the whole test file saying why.
sub npm_clients_or_skip
{
	my ($dir, $why) = npm_clients();
	plan skip_all => "the npm clients are not available: $why" unless $dir;
	return $dir;
}

# Runs $js with node, able to require the clients; %env is added to the
# environment.  Returns (exit status was 0, stdout, stderr).
sub node_script
{
	my ($dir, $js, %env) = @_;
	my ($fh, $file) = tempfile('runra-XXXXXX', SUFFIX => '.js', TMPDIR => 1, UNLINK => 1);
	print $fh $js;
	close $fh;
	local %ENV = (%ENV, NODE_PATH => "$dir/node_modules", %env);
	my ($stdout, $stderr) = ('', '');
	my $ok = IPC::Run::run([ 'node', $file ], '<', \undef, '>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout(180));
	return ($ok ? 1 : 0, $stdout, $stderr);
}

1;
