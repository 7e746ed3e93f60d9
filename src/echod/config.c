/*
 * config.c - echod's options: its table, defaults and the checks between
 * options (opts.c does the parsing).
 */
#include "config.h"

#include "proxy.h"

#include <errno.h>
#include <string.h>

#define FIELD(member) offsetof(struct config, member)

/* echod's options, in --help order. */
static const struct opt echod_opts[] = {
	{"listen", 'l', OPT_ADDR, FIELD(listen), "ADDR", 0, 0, NULL,
	 "listen on ADDR: PORT, HOST:PORT, [V6ADDR]:PORT or unix:PATH; repeatable "
	 "(default: every IPv4 and IPv6 address, port 7127)"},
	{"udp", 0, OPT_FLAG, FIELD(udp), NULL, 0, 0, NULL,
	 "also serve UDP echo on the same addresses and ports (off by default: an open UDP echo "
	 "can be abused as a reflector)"},
	{"udp-rate", 0, OPT_NUM, FIELD(udp_rate), "N", 0, CONFIG_UDP_RATE_MAX, NULL,
	 "UDP datagrams per second answered per source address, 0 = unlimited (default 1000: "
	 "far above what an interactive client or a test needs, yet it caps what a forged "
	 "source address can be made to receive)"},
	{"udp-allow-low-ports", 0, OPT_FLAG, FIELD(udp_allow_low_ports), NULL, 0, 0, NULL,
	 "answer UDP from the well-known service ports the loop guard refuses (echo, chargen, "
	 "ntp...; see echod(1)) too: lab use only, as two such services could loop"},
	{"once", 0, OPT_FLAG, FIELD(once), NULL, 0, 0, NULL,
	 "tutorial mode: echo the first chunk a client sends (up to --buffer bytes), then close"},
	{"model", 'm', OPT_CHOICE, FIELD(model), "MODEL", 0, 0,
	 "auto|epoll|uring|threads|iterative",
	 "auto | epoll | uring | threads | iterative (default auto)"},
	{"workers", 'w', OPT_NUM, FIELD(workers), "N", 1, 1024, NULL,
	 "worker threads for epoll and uring (default: number of CPUs)"},
	{"buffer", 0, OPT_NUM, FIELD(buffer_bytes), "BYTES", 1, 16 << 20, NULL,
	 "receive buffer per connection (default 1024 with --once, else 16384)"},
	{"backlog", 0, OPT_NUM, FIELD(backlog), "N", 1, 65535, NULL,
	 "listen backlog (default SOMAXCONN)"},
	{"max-conns", 0, OPT_NUM, FIELD(max_conns), "N", 0, 10000000, NULL,
	 "serve at most N connections at once; the rest wait in the backlog (0 = no limit)"},
	{"idle-timeout", 0, OPT_SECONDS, FIELD(idle_timeout_ms), "S", 0, 86400, NULL,
	 "close a connection idle for S seconds (default 0 = off)"},
	{"grace", 0, OPT_SECONDS, FIELD(grace_ms), "S", 0, 3600, NULL,
	 "on SIGTERM/SIGINT let open connections finish for up to S seconds (default 5)"},
	{"user", 0, OPT_STR, FIELD(user), "NAME", 0, 0, NULL,
	 "drop privileges to NAME after binding"},
	{"inetd", 0, OPT_FLAG, FIELD(inetd), NULL, 0, 0, NULL,
	 "serve the one connection on standard input (inetd, systemd Accept=yes), then exit; a UDP "
	 "socket there is answered until idle for --idle-timeout (default 10 s)"},
	{"cpu-affinity", 0, OPT_STR, FIELD(cpu_affinity), "LIST", 0, 0, NULL,
	 "auto | off | LIST: pin worker i to the i-th CPU of LIST (as 0-3,8) and steer each TCP "
	 "connection to the "
	 "worker on the CPU that receives it; auto (default): the CPUs echod may run on, when "
	 "there is one worker for each; off: no pinning"},
	{"worker-sched", 0, OPT_CHOICE, FIELD(worker_sched), "POLICY", 0, 0, "auto|batch|normal",
	 "epoll and uring: batch runs the workers SCHED_BATCH, so a wake-up does not preempt "
	 "the task on the worker's CPU; auto (default): batch when the workers are pinned and "
	 "not busy-polling; normal: never (see echod(1))"},
	{"busy-poll", 0, OPT_FLAG, FIELD(busy_poll), NULL, 0, 0, NULL,
	 "epoll and uring: each worker spins on its sockets instead of sleeping, for the lowest "
	 "latency; each worker keeps one CPU 100% busy even with no client (see echod(1))"},
	{"no-sandbox", 0, OPT_FLAG, FIELD(no_sandbox), NULL, 0, 0, NULL,
	 "do not confine the process after start-up (seccomp, Landlock, no new privileges)"},
	{"metrics", 0, OPT_ADDR, FIELD(metrics), "ADDR", 0, 0, NULL,
	 "serve Prometheus metrics at http://ADDR/metrics; ADDR as for --listen, TCP only "
	 "(off by default)"},
	{"proxy-protocol", 0, OPT_FLAG, FIELD(proxy_protocol), NULL, 0, 0, NULL,
	 "every TCP (and unix stream) connection must start with a PROXY protocol header (v1 or "
	 "v2, as HAProxy sends): it is consumed, never echoed, and its address is the one logged; "
	 "a missing, bad or slow (--proxy-timeout) header closes the connection"},
	{"proxy-timeout", 0, OPT_SECONDS, FIELD(proxy_timeout_ms), "S", 0, 3600, NULL,
	 "with --proxy-protocol, close a connection whose header is not complete S seconds after "
	 "the accept (default 5; the spec asks for at least 3)"},
	{"verbose", 'v', OPT_COUNT, FIELD(verbose), NULL, 0, 0, NULL, "log every connection"},
	{"quiet", 'q', OPT_FLAG, FIELD(quiet), NULL, 0, 0, NULL,
	 "log errors only (the listening lines are still printed)"},
	{"log-format", 0, OPT_CHOICE, FIELD(log_format), "FORMAT", 0, 0, "text|json",
	 "text | json (default text)"},
	{"help", 'h', OPT_HELP, 0, NULL, 0, 0, NULL, "print this help and exit"},
	{"version", 'V', OPT_VERSION, 0, NULL, 0, 0, NULL, "print the version and exit"},
};

static void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->model = "auto";
	cfg->backlog = SOMAXCONN;
	cfg->grace_ms = 5000;
	cfg->proxy_timeout_ms = -1; /* not given */
	cfg->log_format = "text";
	cfg->udp_rate = -1; /* not given */
	cfg->cpu_affinity = "auto";
	cfg->worker_sched = "auto";
}

/*
 * --cpu-affinity LIST: a list of CPUs this process may run on, one per
 * worker (the list's length is the default worker count).
 */
static int validate_cpu_affinity(struct config *cfg, bool blocking, char *err, size_t errlen)
{
	char why[CONFIG_ERRLEN], allowed_s[128];
	struct cpu_list allowed;
	int missing;

	if (!strcmp(cfg->cpu_affinity, "auto") || !strcmp(cfg->cpu_affinity, "off"))
		return 0;
	if (cpus_parse(cfg->cpu_affinity, &cfg->cpu_list, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "--cpu-affinity %s: %s", cfg->cpu_affinity, why);
		return -EINVAL;
	}
	cpus_allowed(&allowed);
	if (!cpus_within(&cfg->cpu_list, &allowed, &missing)) {
		cpus_format(&allowed, allowed_s, sizeof(allowed_s));
		snprintf(err, errlen, "--cpu-affinity %s: CPU %d is not one echod may run on (%s)",
			 cfg->cpu_affinity, missing, allowed_s);
		return -EINVAL;
	}
	if (blocking) {
		snprintf(err, errlen,
			 "--cpu-affinity applies to the epoll and uring models, not %s",
			 cfg->model);
		return -EINVAL;
	}
	if (cfg->workers && cfg->workers != cfg->cpu_list.n) {
		snprintf(err, errlen, "--cpu-affinity %s names %d CPU%s for %ld workers",
			 cfg->cpu_affinity, cfg->cpu_list.n, cfg->cpu_list.n == 1 ? "" : "s",
			 cfg->workers);
		return -EINVAL;
	}
	return 0;
}

/* True when every -l address is a unix socket, which has no UDP twin. */
static bool only_unix(const struct config *cfg)
{
	for (int i = 0; i < cfg->listen.n; i++)
		if (!cfg->listen.addr[i].is_unix)
			return false;
	return cfg->listen.n > 0;
}

/* The UDP options' clashes; fills in the --udp-rate default. */
static int validate_udp(struct config *cfg, char *err, size_t errlen)
{
	if (!cfg->udp && (cfg->udp_rate >= 0 || cfg->udp_allow_low_ports)) {
		snprintf(err, errlen, "--%s needs --udp",
			 cfg->udp_rate >= 0 ? "udp-rate" : "udp-allow-low-ports");
		return -EINVAL;
	}
	if (cfg->udp_rate < 0)
		cfg->udp_rate = CONFIG_UDP_RATE;
	if (!cfg->udp)
		return 0;
	/* Every datagram is already answered once; --once would mean nothing. */
	if (cfg->once) {
		snprintf(err, errlen, "cannot use --once with --udp");
		return -EINVAL;
	}
	if (only_unix(cfg)) {
		snprintf(err, errlen, "--udp needs an IP address to listen on, not only unix:");
		return -EINVAL;
	}
	return 0;
}

/* --metrics serves HTTP over TCP, beside listeners of echod's own. */
static int validate_metrics(const struct config *cfg, char *err, size_t errlen)
{
	for (int i = 0; i < cfg->metrics.n; i++)
		if (cfg->metrics.addr[i].is_unix) {
			snprintf(err, errlen, "--metrics needs a TCP address, not unix:%s",
				 cfg->metrics.addr[i].path);
			return -EINVAL;
		}
	if (cfg->metrics.n && cfg->inetd) {
		snprintf(err, errlen,
			 "cannot use --metrics with --inetd (one connection, no listener)");
		return -EINVAL;
	}
	return 0;
}

static int validate_proxy(struct config *cfg, char *err, size_t errlen)
{
	if (cfg->proxy_timeout_ms < 0) {
		cfg->proxy_timeout_ms = PROXY_TIMEOUT_MS;
		return 0;
	}
	if (!cfg->proxy_protocol) {
		snprintf(err, errlen, "--proxy-timeout applies only with --proxy-protocol");
		return -EINVAL;
	}
	if (cfg->proxy_timeout_ms == 0) {
		snprintf(err, errlen, "--proxy-timeout 0: must be more than 0 seconds");
		return -EINVAL;
	}
	return 0;
}

/* Checks the clashes between options, once every option is known. */
static int validate(struct config *cfg, char *err, size_t errlen)
{
	bool blocking = !strcmp(cfg->model, "threads") || !strcmp(cfg->model, "iterative");

	if (cfg->workers && blocking) {
		snprintf(err, errlen, "--workers applies to the epoll and uring models, not %s",
			 cfg->model);
		return -EINVAL;
	}
	if (cfg->busy_poll && blocking) {
		snprintf(err, errlen, "--busy-poll applies to the epoll and uring models, not %s",
			 cfg->model);
		return -EINVAL;
	}
	if (cfg->verbose && cfg->quiet) {
		snprintf(err, errlen, "cannot use --verbose with --quiet");
		return -EINVAL;
	}
	if (validate_metrics(cfg, err, errlen) < 0)
		return -EINVAL;
	if (validate_cpu_affinity(cfg, blocking, err, errlen) < 0)
		return -EINVAL;
	if (!cfg->buffer_bytes)
		cfg->buffer_bytes = cfg->once ? CONFIG_ONCE_BUFFER : CONFIG_STREAM_BUFFER;
	if (validate_proxy(cfg, err, errlen) < 0)
		return -EINVAL;
	/* The bytes after a header (up to its maximum) go to an empty buffer at once. */
	if (cfg->proxy_protocol && cfg->buffer_bytes < PROXY_HEADER_MAX) {
		snprintf(err, errlen, "--proxy-protocol needs --buffer of at least %d bytes",
			 PROXY_HEADER_MAX);
		return -EINVAL;
	}
	return validate_udp(cfg, err, errlen);
}

enum opts_result config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	enum opts_result res;
	int first;

	config_defaults(cfg);
	res = opts_parse(echod_opts, OPTS_COUNT(echod_opts), cfg, argc, argv, false, &first, err,
			 errlen);
	if (res != OPTS_OK)
		return res;
	if (first < argc) {
		snprintf(err, errlen, "unexpected argument \"%s\" (addresses go after -l)",
			 argv[first]);
		return OPTS_ERROR;
	}
	return validate(cfg, err, errlen) < 0 ? OPTS_ERROR : OPTS_OK;
}

void config_usage(FILE *out)
{
	fprintf(out, "usage: echod [options]\n"
		     "Serve the Echo protocol (RFC 862) over TCP (and UDP with --udp).\n\n");
	opts_usage(echod_opts, OPTS_COUNT(echod_opts), out);
}
