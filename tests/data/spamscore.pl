#!/usr/bin/perl
# Scores mail files with SpamAssassin's local rules in one process (the `spamassassin -L` tests, without its
# slow start per message): prints "FILE<TAB>SCORE<TAB>RULE,RULE..." per file. Bayes, the auto-welcomelist and
# user preferences are off, and all state lives in STATE_DIR, so nothing is learnt or written into $HOME.
# usage: perl spamscore.pl STATE_DIR FILE...
use strict;
use warnings;
use Mail::SpamAssassin;

my $state = shift @ARGV or die "usage: spamscore.pl STATE_DIR FILE...\n";
my $sa = Mail::SpamAssassin->new({
    local_tests_only   => 1,
    dont_copy_prefs    => 1,
    userstate_dir      => $state,
    userprefs_filename => "$state/user_prefs",
    post_config_text   => "use_bayes 0\nbayes_auto_learn 0\n",
});
my $errors = $sa->lint_rules();
die "SpamAssassin's rules have $errors error(s)\n" if $errors;
$sa->compile_now(0);
my $rules = $sa->first_existing_path(@Mail::SpamAssassin::default_rules_path) // 'nowhere';
printf "# SpamAssassin %s, rules from %s\n", Mail::SpamAssassin::Version(), $rules;
for my $file (@ARGV) {
    open(my $fh, '<', $file) or die "$file: $!\n";
    my $text = do { local $/; <$fh> };
    close $fh;
    my $mail = $sa->parse($text);
    my $status = $sa->check($mail);
    printf "%s\t%.1f\t%s\n", $file, $status->get_score(), $status->get_names_of_tests_hit();
    $status->finish();
    $mail->finish();
}
