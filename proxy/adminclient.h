/*
 * proxy/adminclient.h: `tessera purge ...` and `tessera stats ...`, the
 * command-line client of the admin listener (issue 8).  It reads the admin
 * address and token from the config, sends one request, prints a short
 * human-readable answer and exits non-zero on any failure.
 */
#ifndef TESSERA_ADMINCLIENT_H
#define TESSERA_ADMINCLIENT_H

/* adminclient_main: run the command argv[0] ("purge" or "stats") with its
 * arguments; default_config is used without -c.  Returns the exit status:
 * 0 done, 1 failed (the error is printed on stderr), 2 bad usage. */
int adminclient_main(int argc, char **argv, const char *default_config);

#endif
