/* What each signal means to cigtd, in one table that the loop (server.c), --help and the README
 * share. No signal an operator can send ends the daemon without a log line and a drain: the ones
 * whose default would kill or stop it are caught and either drain, reload, log the state or are
 * logged and ignored. The ones whose default is harmless (CHLD, CONT, URG, WINCH) keep it. */
#include <signal.h>
#include <stdio.h>

#include "srv.h"

const struct srv_signal srv_signals[] = {
	{SIGHUP, "SIGHUP", SRV_SIG_RELOAD},
	{SIGINT, "SIGINT", SRV_SIG_DRAIN},
	{SIGQUIT, "SIGQUIT", SRV_SIG_DRAIN},
	{SIGUSR1, "SIGUSR1", SRV_SIG_STATUS},
	{SIGUSR2, "SIGUSR2", SRV_SIG_IGNORE},
	{SIGALRM, "SIGALRM", SRV_SIG_IGNORE},
	{SIGTERM, "SIGTERM", SRV_SIG_DRAIN},
#ifdef SIGSTKFLT
	{SIGSTKFLT, "SIGSTKFLT", SRV_SIG_IGNORE},
#endif
	{SIGTSTP, "SIGTSTP", SRV_SIG_IGNORE},
	{SIGTTIN, "SIGTTIN", SRV_SIG_IGNORE},
	{SIGTTOU, "SIGTTOU", SRV_SIG_IGNORE},
	{SIGXCPU, "SIGXCPU", SRV_SIG_DRAIN},
	{SIGXFSZ, "SIGXFSZ", SRV_SIG_IGNORE},
	{SIGVTALRM, "SIGVTALRM", SRV_SIG_IGNORE},
	{SIGPROF, "SIGPROF", SRV_SIG_IGNORE},
#ifdef SIGIO
	{SIGIO, "SIGIO", SRV_SIG_IGNORE},
#endif
#ifdef SIGPWR
	{SIGPWR, "SIGPWR", SRV_SIG_DRAIN},
#endif
};

const int srv_nsignals = (int)(sizeof srv_signals / sizeof srv_signals[0]);

void srv_signals_help(FILE *f)
{
	fputs("Signals:\n"
	      "  TERM, INT, QUIT         drain: stop accepting, answer every request in flight,\n"
	      "                          exit 0 (1 after --drain-timeout-ms); a second one exits\n"
	      "                          at once with 1\n"
	      "  XCPU, PWR               drain, as TERM (a CPU limit or power failure is near)\n"
	      "  HUP                     reload the model file; the old model serves until the new\n"
	      "                          one is loaded and checked, and on failure\n"
	      "  USR1                    log one line: requests in flight, connections, model\n"
	      "  USR2, ALRM, VTALRM, PROF, STKFLT, IO, XFSZ, TSTP, TTIN, TTOU\n"
	      "                          logged and ignored (cigtd logs to stderr: it has no log\n"
	      "                          file to reopen, and it does not stop on TSTP)\n"
	      "  PIPE                    ignored (a client closing its socket raises it)\n"
	      "  CHLD, CONT, URG, WINCH  their harmless default (nothing)\n"
	      "  KILL, STOP and the fault signals (SEGV, BUS, FPE, ILL, ABRT, TRAP, SYS) keep\n"
	      "  their default: the process ends (or stops) at once, with a core for a fault\n",
	      f);
}
