# HTTPS on the ingest port (issue 12): with runra_obs.http_tls_cert_file and
# _key_file set, curl verifies the server against the certificate the test
# made; a plain-HTTP client gets no answer; a reload serves a new
# certificate (new paths, or new contents at the same paths); a bad
# certificate or a key others may read is logged and the previous one kept;
# emptying both settings goes back to plain HTTP; at first start a missing
# file is a clear error.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $dir = PostgreSQL::Test::Utils::tempdir();

# A self-signed certificate for 127.0.0.1 (EC: quick to make) at $name.crt
# and $name.key; the certificate is its own trust anchor for curl.
sub make_cert
{
	my ($name) = @_;
	system('openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
		'-nodes', '-days', '3650', '-subj', "/CN=runra-$name",
		'-addext', 'subjectAltName=IP:127.0.0.1',
		'-keyout', "$dir/$name.key", '-out', "$dir/$name.crt") == 0
	  or die "openssl failed";
	chmod 0600, "$dir/$name.key";
	return ("$dir/$name.crt", "$dir/$name.key");
}

my ($cert1, $key1) = make_cert('one');
my ($cert2, $key2) = make_cert('two');
my ($cert3, $key3) = make_cert('three');

my ($node, $port) = start_http_node(name => 'tls', tls => 1, conf => qq{
runra_obs.http_tls_cert_file = '$cert1'
runra_obs.http_tls_key_file = '$key1'
});
my $token = create_token($node, 'tls');

# curl over HTTPS trusting $ca: (HTTP status, curl's exit code).
sub https
{
	my ($ca, $path, @args) = @_;
	my $out = `curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert '$ca' @args https://127.0.0.1:$port$path`;
	return ($out, $? >> 8);
}

# Waits until curl trusting $ca is answered 200 (after a reload).
sub wait_https
{
	my ($ca) = @_;
	for (1 .. 300)
	{
		return 1 if (https($ca, '/healthz'))[0] eq '200';
		usleep(100_000);
	}
	return 0;
}

sub set_tls
{
	my ($cert, $key) = @_;
	$node->append_conf('postgresql.conf',
		"runra_obs.http_tls_cert_file = '$cert'\nrunra_obs.http_tls_key_file = '$key'\n");
	$node->reload;
}

ok(wait_https($cert1), 'GET /healthz over HTTPS, the certificate verified: 200');
my $body = event_json([ event('sb_tls') ]);
my ($status) = https($cert1, '/v1/events', '-H', "'Authorization: Bearer $token'",
	'-H', "'Content-Type: application/json'", '--data-binary', "'$body'");
is($status, '200', 'POST /v1/events over HTTPS: 200');
is($node->safe_psql('postgres', "SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_tls'"),
	'1', 'and stored');

my $plain = `curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://127.0.0.1:$port/healthz`;
isnt($? >> 8, 0, 'a plain-HTTP client on the TLS port fails');
is($plain, '000', 'and gets no HTTP answer');

# a reload to another certificate
set_tls($cert2, $key2);
ok(wait_https($cert2), 'after a reload the new certificate is served');
my ($none, $rc) = https($cert1, '/healthz');
is($rc, 60, 'and the old one no longer verifies (curl: peer certificate cannot be authenticated)');

# a renewed certificate written over the same files
system('cp', $cert3, $cert2) == 0 or die;
system('cp', $key3, $key2) == 0 or die;
$node->reload;
ok(wait_https($cert3), 'new contents at the same paths are served after a reload');

# a bad certificate is logged, the previous one kept
my $bad = "$dir/bad.crt";
open(my $fh, '>', $bad) or die;
print $fh "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n";
close($fh);
my $offset = -s $node->logfile;
set_tls($bad, $key2);
ok($node->wait_for_log(qr/ERROR:  runra_obs http could not listen on 127\.0\.0\.1 port \d+\n.*DETAIL:  libmicrohttpd: [^\n]*certificate[^\n]*\n.*HINT:  Check runra_obs\.http_tls_cert_file/, $offset),
	'a bad certificate: the error is logged with libmicrohttpd\'s reason and a hint');
ok($node->wait_for_log(qr/keeps serving with its previous TLS settings/, $offset), 'and the previous one is kept');
is((https($cert3, '/healthz'))[0], '200', 'the server still answers with it');

# a key that others may read is refused
chmod 0644, $key1;
$offset = -s $node->logfile;
set_tls($cert1, $key1);
ok($node->wait_for_log(qr/http_tls_key_file "\Q$key1\E" has group or world access/, $offset),
	'a key with group or world access is refused, saying so');
is((https($cert3, '/healthz'))[0], '200', 'the previous certificate is still served');

# both empty: plain HTTP again
set_tls('', '');
wait_for_http($port);
is(http_request($port, 'GET', '/healthz')->{status}, 200, 'emptied settings: plain HTTP after a reload');

# first start with a missing file: a clear error, no listener
$offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "runra_obs.http_tls_cert_file = '$dir/missing.crt'\n"
	  . "runra_obs.http_tls_key_file = '$key2'\n");
$node->restart;
ok($node->wait_for_log(qr/could not open runra_obs\.http_tls_cert_file "\Q$dir\E\/missing\.crt": No such file/, $offset),
	'at first start a missing certificate is a clear error');
is($node->safe_psql('postgres', "SELECT count(*) FROM runra_obs.worker_status WHERE role = 'http' AND state = 'listening'"),
	'0', 'and no HTTP worker listens');

$node->stop;
done_testing();
