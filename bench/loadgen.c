/* bench/loadgen.c: the bench's load generator. A single-threaded GnuTLS
 * client over epoll that drives many connections at once and measures
 * from the client side, while reading the server's own CPU time (its
 * process CPU-time clock) and memory (/proc/PID/status VmRSS) at the
 * edges of the measured window. Why our own: see bench/README.md.
 *
 *   loadgen MODE -p PORT [options]
 *   MODE  hs      a new connection per request, full handshake (no tickets)
 *         resume  a new connection per request, resuming with the ticket
 *                 the previous connection of the same slot got
 *                 (hs and resume take several servers too: connections go
 *                 to each in turn, one result line per server: an A/B run)
 *         ttfb    like hs, one connection at a time; with several servers
 *                 (-p P1,P2,... -P PID1,PID2,...) one connection to each in
 *                 turn, so that every server sees the same moment's noise
 *         bulk    one connection, one GET /bulk/BYTES after a warm-up one
 *         idle    open -c connections, one request each, hold them idle,
 *                 measure the server's RSS growth, then ask each again
 *   -a ADDR       server address (127.0.0.1)      -p PORT[,PORT...]
 *   -c N          concurrent connections (hs, resume: 100; idle: count)
 *   -n N          at most N measured connections
 *   -t SECS       measured window at most SECS seconds (5)
 *   -w SECS       warm-up before the window (0.5)
 *   -P PID[,PID]  the server process(es) to account
 *   -C CIPHER     aes128gcm (default) | chacha20
 *   -b BYTES      bulk body size (256 MiB)
 *
 * Prints one line of key=value pairs; exits 0 when at least one measured
 * request succeeded. Every loop is bounded by -n and by -t plus a fixed
 * grace, whatever the server does. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#define HDR_MAX 1024
#define RECV_BUF 65536
#define MAX_EVENTS 256
#define GRACE 20.0 /* seconds past the window before giving up */
#define MAX_TARGETS 8

enum { M_HS, M_RESUME, M_TTFB, M_BULK, M_IDLE };
enum { S_FREE, S_CONNECT, S_HANDSHAKE, S_SEND, S_RECV, S_PARKED };

typedef struct {
	int fd, state, events, measured;
	int target; /* index into tports/tpids */
	gnutls_session_t s;
	double t0, t_hs, t_first;
	char req[128];
	size_t reqlen, reqoff;
	char hdr[HDR_MAX];
	size_t hdrlen;
	int have_hdr, send_pending;
	unsigned long long body_left, body_got;
	gnutls_datum_t ticket[MAX_TARGETS]; /* the last ticket from each target */
} Slot;

static int mode = M_HS, epfd, port, conc = -1;
static long max_count = -1, server_pid = -1;
static const char *addr = "127.0.0.1";
static double window = 5.0, warmup = 0.5;
static unsigned long long bulk_bytes = 256ULL << 20;
static const char *cipher = "aes128gcm";
static gnutls_certificate_credentials_t cred;
static gnutls_priority_t prio;
static struct sockaddr_in server_sa;
static Slot *slots;
static char rbuf[RECV_BUF];

/* results */
static long ok_count, err_count, resumed_count, started; /* started: in the window */
/* per target: handshake latency and time to first byte of the measured
 * connections, seconds */
static double *lat_t[MAX_TARGETS], *ttfb_t[MAX_TARGETS];
static long nlat_t[MAX_TARGETS], ok_t[MAX_TARGETS], err_t[MAX_TARGETS], resumed_t[MAX_TARGETS];
static int ntargets = 1, cur; /* cur: the target of the connection in hand */
static long ticket_pairs; /* (slot, target) pairs that hold a ticket */
static int tports[MAX_TARGETS];
static long tpids[MAX_TARGETS];
static double t_window_start = -1, t_window_end = -1;
static int in_window, window_over;
static const char *last_error = "";

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Server CPU seconds (user + system), or -1: from the process's CPU-time
 * clock, exact to the nanosecond; else from /proc/PID/stat, in clock ticks
 * (10 ms: over a window in which a server uses 2 s, up to 0.5 % off at
 * each edge, which is the size of the differences an A/B run looks for). */
static double server_cpu(void)
{
	char path[64], buf[1024], *p;
	unsigned long utime, stime;
	clockid_t clock;
	struct timespec ts;
	FILE *f;
	size_t n;
	if (server_pid <= 0)
		return -1;
	if (clock_getcpuclockid((pid_t)server_pid, &clock) == 0 &&
	    clock_gettime(clock, &ts) == 0)
		return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
	snprintf(path, sizeof path, "/proc/%ld/stat", server_pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		   &utime, &stime) != 2)
		return -1;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Server resident set in KiB from /proc/PID/status, or -1. */
static long server_rss(void)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;
	snprintf(path, sizeof path, "/proc/%ld/status", server_pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static void watch(Slot *sl, int events)
{
	struct epoll_event ev;
	if (sl->events == events)
		return;
	ev.events = (unsigned)events;
	ev.data.ptr = sl;
	if (sl->events == 0)
		epoll_ctl(epfd, EPOLL_CTL_ADD, sl->fd, &ev);
	else if (events == 0)
		epoll_ctl(epfd, EPOLL_CTL_DEL, sl->fd, &ev);
	else
		epoll_ctl(epfd, EPOLL_CTL_MOD, sl->fd, &ev);
	sl->events = events;
}

static void watch_gnutls(Slot *sl)
{
	watch(sl, gnutls_record_get_direction(sl->s) ? EPOLLOUT : EPOLLIN);
}

static void slot_close(Slot *sl, int clean)
{
	if (sl->state == S_FREE)
		return;
	watch(sl, 0);
	if (sl->s != NULL) {
		if (clean)
			(void)gnutls_bye(sl->s, GNUTLS_SHUT_WR); /* one attempt */
		gnutls_deinit(sl->s);
		sl->s = NULL;
	}
	close(sl->fd);
	sl->fd = -1;
	sl->state = S_FREE;
}

static void fail(Slot *sl, const char *why)
{
	if (mode == M_IDLE || (sl->measured && in_window)) {
		err_count++;
		err_t[sl->target]++;
	}
	last_error = why;
	slot_close(sl, 0);
}

static void set_request(Slot *sl, unsigned long long body)
{
	if (body > 0)
		sl->reqlen = (size_t)snprintf(sl->req, sizeof sl->req,
					      "GET /bulk/%llu HTTP/1.1\r\nHost: localhost\r\n\r\n", body);
	else
		sl->reqlen = (size_t)snprintf(sl->req, sizeof sl->req,
					      "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
	sl->reqoff = 0;
	sl->hdrlen = 0;
	sl->have_hdr = 0;
	sl->body_left = sl->body_got = 0;
	sl->t_first = -1;
}

/* Starts a new connection in a free slot; 0 on success. */
static int slot_start(Slot *sl)
{
	int one = 1, r;
	unsigned flags = GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL;
	sl->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (sl->fd < 0) {
		last_error = "socket";
		return -1;
	}
	setsockopt(sl->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	sl->events = 0;
	sl->t0 = now();
	sl->measured = in_window;
	started += in_window;
	/* Full handshakes keep no ticket (GnuTLS still sends
	 * psk_key_exchange_modes, so a server with tickets on still issues
	 * one: "tickets off" is the server's setting). */
	if (mode != M_RESUME)
		flags |= GNUTLS_NO_TICKETS;
	gnutls_init(&sl->s, flags);
	gnutls_priority_set(sl->s, prio);
	gnutls_credentials_set(sl->s, GNUTLS_CRD_CERTIFICATE, cred);
	gnutls_server_name_set(sl->s, GNUTLS_NAME_DNS, "localhost", 9);
	if (mode == M_RESUME && sl->ticket[sl->target].data != NULL)
		gnutls_session_set_data(sl->s, sl->ticket[sl->target].data,
					sl->ticket[sl->target].size);
	gnutls_transport_set_int(sl->s, sl->fd);
	set_request(sl, mode == M_BULK ? 4ULL << 20 : 0);
	server_sa.sin_port = htons((unsigned short)tports[sl->target]);
	r = connect(sl->fd, (struct sockaddr *)&server_sa, sizeof server_sa);
	if (r < 0 && errno != EINPROGRESS) {
		last_error = errno == EADDRNOTAVAIL ? "connect: out of ports" : "connect";
		sl->state = S_CONNECT;
		slot_close(sl, 0);
		return -1;
	}
	sl->state = S_CONNECT;
	watch(sl, EPOLLOUT);
	return 0;
}

static void record_done(Slot *sl)
{
	if (!sl->measured || !in_window)
		return;
	int j = sl->target;
	ok_count++;
	ok_t[j]++;
	if (gnutls_session_is_resumed(sl->s)) {
		resumed_count++;
		resumed_t[j]++;
	}
	if (lat_t[j] != NULL) {
		lat_t[j][nlat_t[j]] = sl->t_hs - sl->t0;
		ttfb_t[j][nlat_t[j]] = sl->t_first - sl->t0;
		nlat_t[j]++;
	}
}

/* Reads what the server sent; returns 1 when the response is complete, 0
 * to wait, -1 on error. */
static int read_response(Slot *sl)
{
	for (;;) {
		ssize_t r = gnutls_record_recv(sl->s, rbuf, sizeof rbuf);
		char *end;
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
			return 0;
		if (r == 0) {
			last_error = "server closed before the response ended";
			return -1;
		}
		if (r < 0) {
			if (!gnutls_error_is_fatal((int)r))
				continue;
			last_error = gnutls_strerror((int)r);
			return -1;
		}
		if (sl->t_first < 0)
			sl->t_first = now();
		if (sl->have_hdr) {
			sl->body_got += (unsigned long long)r;
		} else {
			size_t take = (size_t)r, used;
			if (take > HDR_MAX - 1 - sl->hdrlen)
				take = HDR_MAX - 1 - sl->hdrlen;
			memcpy(sl->hdr + sl->hdrlen, rbuf, take);
			sl->hdrlen += take;
			sl->hdr[sl->hdrlen] = '\0';
			end = strstr(sl->hdr, "\r\n\r\n");
			if (end == NULL) {
				if (sl->hdrlen >= HDR_MAX - 1) {
					last_error = "response header too long";
					return -1;
				}
				continue;
			}
			used = (size_t)(end + 4 - sl->hdr) - (sl->hdrlen - take);
			sl->have_hdr = 1;
			{
				char *cl = strcasestr(sl->hdr, "\r\ncontent-length:");
				sl->body_left = cl ? strtoull(cl + 17, NULL, 10) : 0;
			}
			sl->body_got = (unsigned long long)r - used;
		}
		if (sl->have_hdr && sl->body_got >= sl->body_left) {
			if (gnutls_record_check_pending(sl->s) > 0)
				continue;
			return 1;
		}
	}
}

static int send_request(Slot *sl)
{
	while (sl->reqoff < sl->reqlen) {
		ssize_t r = sl->send_pending
				    ? gnutls_record_send(sl->s, NULL, 0)
				    : gnutls_record_send(sl->s, sl->req + sl->reqoff,
							 sl->reqlen - sl->reqoff);
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			sl->send_pending = 1;
			return 0;
		}
		sl->send_pending = 0;
		if (r < 0) {
			last_error = gnutls_strerror((int)r);
			return -1;
		}
		sl->reqoff += (size_t)r;
	}
	return 1;
}

/* bulk mode state */
static int bulk_phase; /* 0 warm-up transfer, 1 measured transfer */
static double bulk_t0, bulk_t1, bulk_cpu0, bulk_cpu1;
static unsigned long long bulk_got;

/* Advances a slot's state machine as far as it goes without waiting. */
static void slot_step(Slot *sl)
{
	int r;
	switch (sl->state) {
	case S_CONNECT: {
		int err = 0;
		socklen_t len = sizeof err;
		getsockopt(sl->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			fail(sl, "connect refused or failed");
			return;
		}
		sl->state = S_HANDSHAKE;
	}
		/* fall through */
	case S_HANDSHAKE:
		r = gnutls_handshake(sl->s);
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			watch_gnutls(sl);
			return;
		}
		if (r < 0) {
			fail(sl, gnutls_strerror(r));
			return;
		}
		sl->t_hs = now();
		sl->state = S_SEND;
		/* fall through */
	case S_SEND:
		r = send_request(sl);
		if (r < 0) {
			fail(sl, last_error);
			return;
		}
		if (r == 0) {
			watch_gnutls(sl);
			return;
		}
		sl->state = S_RECV;
		/* fall through */
	case S_RECV:
		r = read_response(sl);
		if (r < 0) {
			fail(sl, last_error);
			return;
		}
		if (r == 0) {
			watch_gnutls(sl);
			return;
		}
		break;
	default:
		return;
	}

	/* a complete response */
	if (mode == M_BULK) {
		if (bulk_phase == 0) {
			bulk_phase = 1;
			set_request(sl, bulk_bytes);
			bulk_cpu0 = server_cpu();
			bulk_t0 = now();
			sl->state = S_SEND;
			slot_step(sl);
		} else {
			bulk_t1 = now();
			bulk_cpu1 = server_cpu();
			bulk_got = sl->body_got;
			ok_count = 1;
			slot_close(sl, 1);
			bulk_phase = 2;
		}
		return;
	}
	if (mode == M_IDLE) {
		if (sl->state == S_RECV && sl->measured == 2) {
			ok_count++; /* answered after the idle period */
			sl->measured = 3;
		}
		sl->state = S_PARKED;
		watch(sl, 0);
		return;
	}
	record_done(sl);
	if (mode == M_RESUME) {
		gnutls_datum_t d;
		if (gnutls_session_get_data2(sl->s, &d) == 0) {
			if (sl->ticket[sl->target].data == NULL)
				ticket_pairs++;
			gnutls_free(sl->ticket[sl->target].data);
			sl->ticket[sl->target] = d;
		}
	}
	slot_close(sl, 1);
}

static void pump(double until)
{
	struct epoll_event evs[MAX_EVENTS];
	int i, n, ms;
	double left = until - now();
	if (left < 0)
		left = 0;
	ms = (int)(left * 1000);
	if (ms > 100)
		ms = 100;
	n = epoll_wait(epfd, evs, MAX_EVENTS, ms);
	for (i = 0; i < n; i++)
		slot_step((Slot *)evs[i].data.ptr);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, long n, double p)
{
	long i;
	if (n == 0)
		return -1;
	i = (long)ceil(p * (double)n) - 1;
	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return v[i];
}

/* hs, resume, ttfb: keep conc connections going through the window. */
/* CPU seconds of every target, into cpu[] (-1 when unknown). */
static void targets_cpu(double *cpu)
{
	int j;
	long keep = server_pid;
	for (j = 0; j < ntargets; j++) {
		server_pid = tpids[j];
		cpu[j] = server_cpu();
	}
	server_pid = keep;
}

/* hs, resume: keep conc connections going through the window; with several
 * targets, each new connection goes to the next one in turn (an A/B run:
 * both servers see the same moments of the machine's other load). */
static int run_requests(void)
{
	double t_start = now(), t_end, hard, cpu0[MAX_TARGETS], cpu1[MAX_TARGETS];
	int i, j, rr = 0, status = 1;
	for (j = 0; j < ntargets; j++) {
		lat_t[j] = (double *)malloc(sizeof(double) * (size_t)(max_count + conc));
		ttfb_t[j] = (double *)malloc(sizeof(double) * (size_t)(max_count + conc));
		if (lat_t[j] == NULL || ttfb_t[j] == NULL)
			return 1;
	}
	t_end = t_start + warmup + window;
	hard = t_end + GRACE + 10;
	for (;;) {
		double t = now();
		/* resume: the window opens once every slot holds a ticket from
		 * every server (at most 10 s late), so that it counts resumptions */
		if (!in_window && !window_over && t >= t_start + warmup &&
		    (mode != M_RESUME || ticket_pairs >= (long)conc * ntargets ||
		     t >= t_start + warmup + 10)) {
			in_window = 1;
			t_window_start = t;
			t_end = t + window;
			hard = t_end + GRACE;
			targets_cpu(cpu0);
		}
		if (in_window && (t >= t_end || ok_count >= max_count)) {
			in_window = 0;
			window_over = 1;
			t_window_end = t;
			targets_cpu(cpu1);
			break;
		}
		if (t >= hard)
			break;
		for (i = 0; i < conc; i++) {
			if (slots[i].state == S_FREE) {
				if (in_window && started >= max_count + conc)
					continue;
				slots[i].target = rr++ % ntargets;
				if (slot_start(&slots[i]) < 0) {
					err_count++;
					continue;
				}
				slot_step(&slots[i]);
			}
		}
		pump(t_end);
	}
	for (i = 0; i < conc; i++)
		slot_close(&slots[i], 0);
	if (t_window_end < 0) {
		printf("error=%s ok=0\n", "no measured window");
		return 1;
	}
	for (j = 0; j < ntargets; j++) {
		double secs = t_window_end - t_window_start, sum = 0;
		double cpu = (cpu0[j] >= 0 && cpu1[j] >= 0) ? cpu1[j] - cpu0[j] : -1;
		double *lat = lat_t[j], *ttfb = ttfb_t[j];
		long k, nlat = nlat_t[j];
		qsort(lat, (size_t)nlat, sizeof *lat, cmp_double);
		qsort(ttfb, (size_t)nlat, sizeof *ttfb, cmp_double);
		for (k = 0; k < nlat; k++)
			sum += ttfb[k];
		if (ntargets > 1)
			printf("target=%d port=%d ", j, tports[j]);
		printf("ok=%ld err=%ld resumed=%ld secs=%.3f rate=%.1f cpu=%.3f per_cpu=%.1f "
		       "hs_p50_ms=%.3f hs_p99_ms=%.3f ttfb_p50_ms=%.3f ttfb_mean_ms=%.3f ttfb_p99_ms=%.3f "
		       "last_error=\"%s\"\n",
		       ok_t[j], ntargets > 1 ? err_t[j] : err_count, resumed_t[j], secs,
		       ok_t[j] / secs, cpu, cpu > 0 ? ok_t[j] / cpu : -1,
		       pct(lat, nlat, 0.5) * 1e3, pct(lat, nlat, 0.99) * 1e3,
		       pct(ttfb, nlat, 0.5) * 1e3, nlat ? sum / (double)nlat * 1e3 : -1,
		       pct(ttfb, nlat, 0.99) * 1e3, last_error);
		if (ok_t[j] > 0)
			status = 0;
	}
	return status;
}

/* ttfb: one connection at a time, to each target in turn, until every
 * target has -n measured connections or the window ends. */
static int run_ttfb(void)
{
	double t_start = now(), t_warm = t_start + warmup, t_end, hard;
	double cpu0[MAX_TARGETS], cpu1[MAX_TARGETS], secs;
	int j, next = 0, status = 1;
	t_end = t_warm + window;
	hard = t_end + GRACE;
	for (j = 0; j < ntargets; j++) {
		lat_t[j] = (double *)malloc(sizeof(double) * (size_t)max_count);
		ttfb_t[j] = (double *)malloc(sizeof(double) * (size_t)max_count);
		if (lat_t[j] == NULL || ttfb_t[j] == NULL)
			return 1;
	}
	for (;;) {
		double t = now();
		int done = 1;
		for (j = 0; j < ntargets; j++)
			if (nlat_t[j] < max_count)
				done = 0;
		if (!in_window && t >= t_warm) {
			in_window = 1;
			t_window_start = t;
			for (j = 0; j < ntargets; j++) {
				server_pid = tpids[j];
				cpu0[j] = server_cpu();
			}
		}
		if ((in_window && (done || t >= t_end)) || t >= hard)
			break;
		if (slots[0].state == S_FREE) {
			/* the next target that still needs connections */
			for (j = 0; j < ntargets; j++) {
				cur = (next + j) % ntargets;
				if (!in_window || nlat_t[cur] < max_count)
					break;
			}
			next = cur + 1;
			slots[0].target = cur;
			if (slot_start(&slots[0]) < 0) {
				err_t[cur] += in_window;
				usleep(1000);
				continue;
			}
			slot_step(&slots[0]);
			continue;
		}
		pump(hard);
	}
	t_window_end = now();
	slot_close(&slots[0], 0);
	secs = t_window_start > 0 ? t_window_end - t_window_start : 0;
	for (j = 0; j < ntargets; j++) {
		double sum = 0, cpu;
		long k, n = nlat_t[j];
		server_pid = tpids[j];
		cpu1[j] = server_cpu();
		cpu = (in_window && cpu0[j] >= 0 && cpu1[j] >= 0) ? cpu1[j] - cpu0[j] : -1;
		qsort(lat_t[j], (size_t)n, sizeof(double), cmp_double);
		qsort(ttfb_t[j], (size_t)n, sizeof(double), cmp_double);
		for (k = 0; k < n; k++)
			sum += ttfb_t[j][k];
		printf("target=%d port=%d ok=%ld err=%ld secs=%.3f cpu=%.3f per_cpu=%.1f "
		       "hs_p50_ms=%.3f ttfb_p50_ms=%.3f ttfb_mean_ms=%.3f ttfb_p99_ms=%.3f\n",
		       j, tports[j], ok_t[j], err_t[j], secs, cpu, cpu > 0 ? ok_t[j] / cpu : -1,
		       pct(lat_t[j], n, 0.5) * 1e3, pct(ttfb_t[j], n, 0.5) * 1e3,
		       n ? sum / (double)n * 1e3 : -1, pct(ttfb_t[j], n, 0.99) * 1e3);
		if (ok_t[j] > 0)
			status = 0;
	}
	return status;
}

static int run_bulk(void)
{
	double hard = now() + window + GRACE;
	conc = 1;
	if (slot_start(&slots[0]) < 0) {
		printf("error=\"%s\" ok=0\n", last_error);
		return 1;
	}
	slot_step(&slots[0]);
	while (bulk_phase < 2 && slots[0].state != S_FREE && now() < hard)
		pump(hard);
	slot_close(&slots[0], 0);
	if (bulk_phase < 2) {
		printf("error=\"%s\" ok=0\n", *last_error ? last_error : "timeout");
		return 1;
	}
	{
		double secs = bulk_t1 - bulk_t0, cpu = bulk_cpu1 - bulk_cpu0;
		double mb = (double)bulk_got / 1e6;
		printf("ok=1 bytes=%llu secs=%.3f mbps=%.1f cpu=%.3f mb_per_cpu=%.1f\n",
		       bulk_got, secs, mb / secs, cpu, cpu > 0 ? mb / cpu : -1);
	}
	return 0;
}

/* idle: -c connections established and parked, RSS before and after,
 * then every connection asked again. */
static int run_idle(void)
{
	double t_end = now() + window, hard;
	long rss0, rss1, open_ = 0, parked = 0, answered;
	int i, inflight_max = 100;
	rss0 = server_rss();
	in_window = 1;
	/* open them, at most inflight_max handshakes at a time */
	while (now() < t_end) {
		int inflight = 0;
		parked = 0;
		for (i = 0; i < conc; i++) {
			if (slots[i].state == S_PARKED)
				parked++;
			else if (slots[i].state != S_FREE)
				inflight++;
		}
		if (parked == conc)
			break;
		for (i = 0; i < conc && inflight < inflight_max; i++) {
			if (slots[i].state == S_FREE && slots[i].measured != 1) {
				if (slot_start(&slots[i]) == 0) {
					slots[i].measured = 1;
					open_++;
					inflight++;
					slot_step(&slots[i]);
				} else {
					err_count++;
				}
			}
		}
		pump(t_end);
	}
	/* slots that failed once get marked measured=1 and stay free */
	usleep(500000);
	rss1 = server_rss();
	/* ask every parked connection again */
	answered = 0;
	ok_count = 0;
	for (i = 0; i < conc; i++) {
		Slot *sl = &slots[i];
		if (sl->state != S_PARKED)
			continue;
		sl->measured = 2;
		set_request(sl, 0);
		sl->state = S_SEND;
		slot_step(sl);
	}
	hard = now() + GRACE;
	for (;;) {
		int waiting = 0;
		for (i = 0; i < conc; i++)
			if (slots[i].measured == 2 && slots[i].state != S_FREE)
				waiting++;
		if (waiting == 0 || now() >= hard)
			break;
		pump(hard);
	}
	answered = ok_count;
	for (i = 0; i < conc; i++)
		slot_close(&slots[i], 1);
	printf("ok=%ld conns=%d parked=%ld answered=%ld err=%ld rss0_kib=%ld rss1_kib=%ld "
	       "per_conn_kib=%.2f last_error=\"%s\"\n",
	       answered, conc, parked, answered, err_count, rss0, rss1,
	       parked > 0 ? (double)(rss1 - rss0) / (double)parked : -1, last_error);
	return parked == conc && answered == parked ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *prios;
	int opt, i;
	struct rlimit rl;

	if (argc < 2) {
		fprintf(stderr, "usage: loadgen hs|resume|ttfb|bulk|idle -p PORT [options]\n");
		return 2;
	}
	if (!strcmp(argv[1], "hs")) mode = M_HS;
	else if (!strcmp(argv[1], "resume")) mode = M_RESUME;
	else if (!strcmp(argv[1], "ttfb")) mode = M_TTFB;
	else if (!strcmp(argv[1], "bulk")) mode = M_BULK;
	else if (!strcmp(argv[1], "idle")) mode = M_IDLE;
	else {
		fprintf(stderr, "loadgen: unknown mode %s\n", argv[1]);
		return 2;
	}
	optind = 2;
	while ((opt = getopt(argc, argv, "a:p:c:n:t:w:P:C:b:")) != -1) {
		switch (opt) {
		case 'a': addr = optarg; break;
		case 'p': {
			char *tok, *save = NULL;
			ntargets = 0;
			for (tok = strtok_r(optarg, ",", &save); tok && ntargets < MAX_TARGETS;
			     tok = strtok_r(NULL, ",", &save))
				tports[ntargets++] = atoi(tok);
			port = tports[0];
			break;
		}
		case 'c': conc = atoi(optarg); break;
		case 'n': max_count = atol(optarg); break;
		case 't': window = atof(optarg); break;
		case 'w': warmup = atof(optarg); break;
		case 'P': {
			char *tok, *save = NULL;
			int k = 0;
			for (tok = strtok_r(optarg, ",", &save); tok && k < MAX_TARGETS;
			     tok = strtok_r(NULL, ",", &save))
				tpids[k++] = atol(tok);
			server_pid = tpids[0];
			break;
		}
		case 'C': cipher = optarg; break;
		case 'b': bulk_bytes = strtoull(optarg, NULL, 10); break;
		default: return 2;
		}
	}
	if (port <= 0) {
		fprintf(stderr, "loadgen: -p PORT is required\n");
		return 2;
	}
	if (ntargets > 1 && (mode == M_BULK || mode == M_IDLE)) {
		fprintf(stderr, "loadgen: several servers only in hs, resume and ttfb modes\n");
		return 2;
	}
	if (conc < 1)
		conc = mode == M_TTFB || mode == M_BULK ? 1 : 100;
	if (mode == M_TTFB)
		conc = 1;
	if (max_count < 1)
		max_count = 1000000;
	if (window <= 0 || window > 600)
		window = 5;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)conc + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);

	if (!strcmp(cipher, "chacha20"))
		prios = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305:"
			"-GROUP-ALL:+GROUP-X25519";
	else if (!strcmp(cipher, "aes128gcm"))
		prios = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:"
			"-GROUP-ALL:+GROUP-X25519";
	else {
		fprintf(stderr, "loadgen: unknown cipher %s\n", cipher);
		return 2;
	}
	if (gnutls_global_init() < 0 || gnutls_certificate_allocate_credentials(&cred) < 0 ||
	    gnutls_priority_init2(&prio, prios, NULL, 0) < 0) {
		fprintf(stderr, "loadgen: cannot set up GnuTLS\n");
		return 1;
	}
	memset(&server_sa, 0, sizeof server_sa);
	server_sa.sin_family = AF_INET;
	server_sa.sin_port = htons((unsigned short)port);
	if (inet_pton(AF_INET, addr, &server_sa.sin_addr) != 1) {
		fprintf(stderr, "loadgen: -a wants an IPv4 address\n");
		return 2;
	}
	epfd = epoll_create1(0);
	slots = (Slot *)calloc((size_t)conc, sizeof *slots);
	if (slots == NULL)
		return 1;
	for (i = 0; i < conc; i++)
		slots[i].fd = -1;
	switch (mode) {
	case M_BULK: return run_bulk();
	case M_IDLE: return run_idle();
	case M_TTFB: return run_ttfb();
	default: return run_requests();
	}
}
