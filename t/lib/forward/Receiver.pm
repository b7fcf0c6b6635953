# forward::Receiver — a small HTTP receiver for the forwarding tests and the
# benchmark, bound to 127.0.0.1 on a free port, run in a child process.
#
# It answers each request from a plan: the file plan in its directory holds
# one answer per line, consumed in order; when the plan is empty it answers
# 200.  A line is "STATUS [Retry-After: V] [DELAY=seconds] [BODY json]".
# With no BODY, a 200 carries an Axiom-style body ({"ingested":n,
# "failed":0,...}, n counted from the request's JSON array) when the body
# is a JSON array (Axiom's, on any of its ingest paths) and "{}" otherwise.  Each request is logged, one JSON object a line,
# in requests.jsonl once answered: arrival time, path, headers (lowercased), status answered and
# the body (gunzipped when Content-Encoding is gzip) unless log_bodies => 0;
# arrivals() counts requests as soon as they are read.
package forward::Receiver;

use strict;
use warnings;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use Time::HiRes qw(time sleep);

sub new
{
	my ($class, %opt) = @_;
	my $self = bless {
		dir => tempdir(CLEANUP => 1),
		log_bodies => $opt{log_bodies} // 1,
	}, $class;
	$self->{port} = PostgreSQL::Test::Cluster::get_free_port();
	my $listen = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1', LocalPort => $self->{port},
		Proto => 'tcp', Listen => 128, ReuseAddr => 1)
	  or die "cannot listen on 127.0.0.1:$self->{port}: $!";
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		$self->_serve($listen);
		exit 0;
	}
	close $listen;
	$self->{pid} = $pid;
	return $self;
}

sub url { my $self = shift; return "http://127.0.0.1:$self->{port}"; }

# Appends answers to the plan.
sub plan
{
	my ($self, @lines) = @_;
	open my $fh, '>>', "$self->{dir}/plan" or die $!;
	print $fh "$_\n" for @lines;
	close $fh;
}

# Every logged request so far, as hashes.
sub requests
{
	my $self = shift;
	my @r;
	open my $fh, '<', "$self->{dir}/requests.jsonl" or return ();
	while (my $line = <$fh>)
	{
		push @r, decode_json($line);
	}
	close $fh;
	return @r;
}

# How many requests have arrived (answered or not yet).
sub arrivals
{
	my $self = shift;
	open my $fh, '<', "$self->{dir}/arrivals" or return 0;
	my @lines = <$fh>;
	close $fh;
	return scalar @lines;
}

sub stop
{
	my $self = shift;
	return unless $self->{pid};
	kill 'KILL', $self->{pid};
	waitpid $self->{pid}, 0;
	delete $self->{pid};
}

# (waitpid sets $?: at exit that would become the test's exit status)
sub DESTROY { my $self = shift; local $?; $self->stop; }

# ---- the child ----

sub _next_answer
{
	my $self = shift;
	my $plan = "$self->{dir}/plan";
	return '200' unless -s $plan;
	open my $fh, '<', $plan or return '200';
	my @lines = <$fh>;
	close $fh;
	my $first = shift @lines;
	open $fh, '>', "$plan.tmp" or die $!;
	print $fh @lines;
	close $fh;
	rename "$plan.tmp", $plan;
	chomp $first;
	return $first;
}

sub _read_request
{
	my ($conn) = @_;
	my $head = '';
	while ($head !~ /\r\n\r\n/)
	{
		my $n = sysread($conn, $head, 65536, length $head);
		return undef unless $n;
	}
	my ($top, $rest) = split /\r\n\r\n/, $head, 2;
	my ($request_line, @header_lines) = split /\r\n/, $top;
	my ($method, $path) = split / /, $request_line;
	my %h;
	for (@header_lines)
	{
		my ($k, $v) = split /:\s*/, $_, 2;
		$h{lc $k} = $v;
	}
	my $len = $h{'content-length'} // 0;
	while (length $rest < $len)
	{
		my $n = sysread($conn, $rest, $len - length $rest, length $rest);
		return undef unless $n;
	}
	return { method => $method, path => $path, headers => \%h, body => $rest };
}

sub _answer_body
{
	my ($body) = @_;
	return '{}' unless $body =~ /^\[/;	# Axiom's JSON array, whatever its path
	my $n = () = $body =~ /\{"_time":/g;	# cheaper than parsing a 1000-event batch
	return encode_json({ ingested => $n, failed => 0, failures => [], processedBytes => length $body });
}

sub _serve
{
	my ($self, $listen) = @_;
	$SIG{PIPE} = 'IGNORE';		# a client killed mid-request must not kill us
	while (my $conn = $listen->accept)
	{
		my $req = _read_request($conn);
		next unless $req;
		my $t = time;
		open my $arrived, '>>', "$self->{dir}/arrivals" or die $!;
		print $arrived "$t\n";
		close $arrived;
		my $body = $req->{body};
		if (($req->{headers}{'content-encoding'} // '') eq 'gzip')
		{
			my $plain;
			gunzip(\$body => \$plain) or $plain = "gunzip failed: $GunzipError";
			$body = $plain;
		}
		my $answer = $self->_next_answer;
		my ($status) = $answer =~ /^(\d+)/;
		my ($retry_after) = $answer =~ /Retry-After: (.+?)(?: DELAY=| BODY |$)/;
		my ($delay) = $answer =~ /DELAY=([\d.]+)/;
		my ($reply) = $answer =~ / BODY (.*)$/;
		$reply //= $status == 200 ? _answer_body($body) : '{"message":"planned failure"}';
		sleep($delay) if $delay;
		open my $log, '>>', "$self->{dir}/requests.jsonl" or die $!;
		print $log encode_json({
			t => $t, path => $req->{path}, headers => $req->{headers},
			status => $status + 0,
			bytes => length $body,
			$self->{log_bodies} ? (body => $body) : (),
		}) . "\n";
		close $log;
		my $out = "HTTP/1.1 $status X\r\nContent-Type: application/json\r\n"
		  . "Content-Length: " . length($reply) . "\r\nConnection: close\r\n"
		  . (defined $retry_after ? "Retry-After: $retry_after\r\n" : '')
		  . "\r\n$reply";
		syswrite($conn, $out);
		close $conn;
	}
}

1;
