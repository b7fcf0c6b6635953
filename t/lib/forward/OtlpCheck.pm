# forward::OtlpCheck — what the OTLP forwarding tests check every captured
# request body with: the official OpenTelemetry definitions (verify, then
# a binary round trip) and the strict rules protobufjs's lenient fromObject
# lets through (otlp_check.js beside this file says which).  Also the
# AnyValue shapes the expectations are written in.
#
#     my @reports = otlp_check($clients, $receiver->requests);
#     # each: {path, signal, verify, problems => [...], roundtrip, ...}
package forward::OtlpCheck;

use strict;
use warnings;
use Exporter 'import';
use File::Basename qw(dirname);
use File::Temp qw(tempfile);
use JSON::PP;
use NpmClients;

our @EXPORT = qw(otlp_check S I D B KV A NUL attributes_of);

my $script = dirname(__FILE__) . '/otlp_check.js';

# Reports on the requests (receiver log entries with path and body).
sub otlp_check
{
	my ($clients, @requests) = @_;
	my ($fh, $file) = tempfile('otlp-bodies-XXXXXX', SUFFIX => '.json', TMPDIR => 1, UNLINK => 1);
	print $fh encode_json([ map { { path => $_->{path}, body => $_->{body} } } @requests ]);
	close $fh;
	open my $js, '<', $script or die "cannot read $script: $!";
	my $text = do { local $/; <$js> };
	close $js;
	my ($ok, $out, $err) = node_script($clients, $text, BODIES => $file);
	die "otlp_check.js failed: $err" unless $ok;
	return @{ decode_json($out) };
}

# AnyValues as the OTLP JSON encoding writes them.
sub S { return { stringValue => $_[0] }; }
sub I { return { intValue => "$_[0]" }; }
sub D { return { doubleValue => $_[0] }; }
sub B { return { boolValue => $_[0] ? JSON::PP::true : JSON::PP::false }; }
sub NUL { return {}; }
sub A { return { arrayValue => { values => [@_] } }; }

# A kvlist from key => value pairs, in the order given.
sub KV
{
	my @pairs = @_;
	my @values;
	push @values, { key => shift @pairs, value => shift @pairs } while @pairs;
	return { kvlistValue => { values => \@values } };
}

# An attribute list as a hash (its keys are unique: otlp_check says so).
sub attributes_of
{
	my ($list) = @_;
	return { map { $_->{key} => $_->{value} } @{ $list // [] } };
}

1;
