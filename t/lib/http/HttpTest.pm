# HttpTest — what the HTTP ingest TAP tests share: a node with the HTTP
# workers on a free port, tokens, events, and a small HTTP client
# (HTTP::Tiny, in Perl's core) talking to 127.0.0.1.
package HttpTest;

use strict;
use warnings;
use Exporter 'import';
use HTTP::Tiny;
use IO::Compress::Gzip qw(gzip $GzipError);
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RunraNode;
use POSIX qw(strftime);
use Time::HiRes qw(time usleep);

our @EXPORT = qw(start_http_node create_token event event_json post_events stored_events
  http_request gzip_text worker_pids wait_for_workers wait_for_http
  start_children wait_children raw_connect raw_request read_until_closed read_response metric_value);

# A RunraNode (t/lib/RunraNode.pm: every other worker off) with the
# extension and N HTTP workers listening on a free port of 127.0.0.1.
# Extra settings as a string (a test that needs another worker turns it on
# there); tls => 1 when they make it HTTPS (then the plain-HTTP wait is
# skipped).
sub start_http_node
{
	my (%opt) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $workers = $opt{workers} // 1;
	my $node = runra_node($opt{name} // 'http',
		"runra_obs.http_workers = $workers",
		"runra_obs.http_port = $port",
		"runra_obs.http_listen_addresses = '127.0.0.1'",
		$opt{conf} // ());
	wait_for_workers($node, $workers);
	wait_for_http($port) unless $opt{tls};
	return ($node, $port);
}

# Waits until n HTTP workers are listening (worker_status says so).
sub wait_for_workers
{
	my ($node, $n) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) = $n FROM runra_obs.worker_status WHERE role = 'http' AND state = 'listening'")
	  or die "the HTTP workers did not start";
}

# Waits until GET /healthz answers at all (any status).
sub wait_for_http
{
	my ($port) = @_;
	for (1 .. 300)
	{
		my $r = http_request($port, 'GET', '/healthz');
		return 1 if $r->{status} != 599;
		usleep(100_000);
	}
	die "nothing answers on port $port";
}

sub worker_pids
{
	my ($node) = @_;
	return split /\n/, $node->safe_psql('postgres',
		"SELECT pid FROM runra_obs.worker_status WHERE role = 'http' ORDER BY pid");
}

sub create_token
{
	my ($node, $name) = @_;
	return $node->safe_psql('postgres', "SELECT runra_obs.create_ingest_token('$name')");
}

# One valid event (a hash) with a unique sandbox id.
sub event
{
	my ($sandbox, %extra) = @_;
	return {
		timestamp => strftime('%Y-%m-%dT%H:%M:%SZ', gmtime),
		sandboxId => $sandbox,
		type => $extra{type} // 'sandbox.created',
		data => $extra{data} // { n => 1 },
	};
}

# Minimal JSON for our test events (no JSON module in Perl's core on every
# machine; the values here are plain strings and numbers).
sub event_json
{
	my ($e) = @_;
	return '[' . join(',', map { event_json($_) } @$e) . ']' if ref $e eq 'ARRAY';
	my @pairs;
	for my $k (sort keys %$e)
	{
		my $v = $e->{$k};
		my $text = ref $v eq 'HASH'
		  ? '{' . join(',', map { qq{"$_":$v->{$_}} } sort keys %$v) . '}'
		  : qq{"$v"};
		push @pairs, qq{"$k":$text};
	}
	return '{' . join(',', @pairs) . '}';
}

# The stored events of a sandbox, one a line: time (UTC, to the
# microsecond) | type | data | trace id (or -), in time order.
sub stored_events
{
	my ($node, $sandbox) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(concat_ws(' | ', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
			event_type, data::text, coalesce(trace_id, '-')), E'\\n' ORDER BY created_at, event_type)
		FROM runra_obs.sandbox_events WHERE sandbox_id = '$sandbox'});
}

sub gzip_text
{
	my ($text) = @_;
	my $out;
	gzip(\$text => \$out) or die $GzipError;
	return $out;
}

# Any request: returns HTTP::Tiny's hash (status, headers, content).
sub http_request
{
	my ($port, $method, $path, %opt) = @_;
	my $client = HTTP::Tiny->new(timeout => $opt{timeout} // 30, keep_alive => 0);
	my %args = (headers => $opt{headers} // {});
	$args{content} = $opt{body} if defined $opt{body};
	return $client->request($method, "http://127.0.0.1:$port$path", \%args);
}

# POST /v1/events with a token and a body (JSON unless type says).
sub post_events
{
	my ($port, $token, $body, %opt) = @_;
	my %headers = ('Content-Type' => $opt{type} // 'application/json');
	$headers{Authorization} = "Bearer $token" if defined $token;
	%headers = (%headers, %{ $opt{headers} // {} });
	return http_request($port, 'POST', '/v1/events', headers => \%headers,
		body => $body, timeout => $opt{timeout});
}


# A raw TCP connection to the server, from the loopback address $from
# (default 127.0.0.1: any 127.x.y.z works on Linux, so tests can play
# several clients).
sub raw_connect
{
	my ($port, $from) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
		LocalAddr => $from // '127.0.0.1', Timeout => 5)
	  or die "connect from " . ($from // '127.0.0.1') . ": $!";
	return $sock;
}

# Reads what the server sends until it closes the connection, or $seconds
# (default 5) pass; returns it all (in list context, and whether the
# server closed the connection).
sub read_until_closed
{
	my ($sock, $seconds) = @_;
	my $answer = '';
	my $closed = eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		alarm($seconds // 5);
		while (sysread($sock, my $buf, 65536)) { $answer .= $buf; }
		alarm 0;
		1;
	};
	return wantarray ? ($answer, $closed ? 1 : 0) : $answer;
}

# Reads one answer from a kept-alive connection: returns its status, its
# headers (names in lower case) and its body, or dies after $seconds
# (default 5).
sub read_response
{
	my ($sock, $seconds) = @_;
	my $data = '';
	local $SIG{ALRM} = sub { die "no whole answer within the time\n" };
	alarm($seconds // 5);
	until ($data =~ /\r\n\r\n/)
	{
		sysread($sock, $data, 65536, length $data) or die "connection closed before an answer\n";
	}
	my ($head, $body) = split /\r\n\r\n/, $data, 2;
	my ($status_line, @lines) = split /\r\n/, $head;
	my %headers = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } @lines;
	my $length = $headers{'content-length'} // 0;
	while (length($body) < $length)
	{
		sysread($sock, $body, 65536, length $body) or die "connection closed inside an answer\n";
	}
	alarm 0;
	my ($status) = $status_line =~ /^HTTP\/1\.\d (\d{3})/;
	return ($status, \%headers, $body);
}

# Sends raw bytes on a new connection and returns everything the server
# answered before closing it (or 5 s passed).
sub raw_request
{
	my ($port, $bytes, %opt) = @_;
	my $sock = raw_connect($port, $opt{from});
	print $sock $bytes;
	return read_until_closed($sock);
}

# The value of one line of GET /metrics (name with labels, as printed).
sub metric_value
{
	my ($port, $series) = @_;
	my $page = http_request($port, 'GET', '/metrics')->{content};
	return $page =~ /^\Q$series\E (\S+)$/m ? $1 : undef;
}

# Forks n children running code($i); a child's exit status is code's
# return value.  Children leave with POSIX::_exit, so the test's END blocks
# (which stop the nodes) run only in the parent.
sub start_children
{
	my ($n, $code) = @_;
	my @pids;
	for my $i (1 .. $n)
	{
		my $pid = fork() // die "fork: $!";
		if ($pid == 0)
		{
			my $rc = eval { $code->($i) } // 99;
			POSIX::_exit($rc);
		}
		push @pids, $pid;
	}
	return @pids;
}

# Waits for the children; returns how many exited with status 0.
sub wait_children
{
	my $ok = 0;
	for my $pid (@_)
	{
		waitpid($pid, 0);
		$ok++ if $? == 0;
	}
	return $ok;
}

1;
