/* bench/baseline.c: the limit luatls's C core could reach. A plain,
 * single-threaded GnuTLS + libev server speaking the bench protocol:
 *
 *   request   "GET /PATH HTTP/1.1\r\n" header lines "\r\n" (keep-alive)
 *   response  "HTTP/1.1 200 OK\r\nContent-Length: N\r\n\r\n" + body
 *             PATH "/bulk/N": N bytes of 'x'; anything else: "ok\n"
 *
 * Same priority string as luatls's default context, one connection per
 * struct, one ev_io per connection (armed for the direction GnuTLS asks).
 *
 *   baseline -p PORT -c CERT -k KEY [-T] [-R] [-a ADDR]
 *   -T: send TLS 1.3 session tickets (off by default: full handshakes)
 *   -R: luatls's socket transport instead of GnuTLS's own: reads ahead
 *       (one recv per flight, not two per record), sends what a handshake
 *       step gathers in one send (but the ServerHello before signing), and
 *       takes a short read to mean the socket is empty (see fd_pull in
 *       src/session.c). Without -R this is
 *       what a plain GnuTLS server does; with it, the same C server with
 *       the transport luatls has, so that luatls/baseline-with-R is what
 *       the Lua layer alone costs. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <ev.h>
#include <gnutls/gnutls.h>

#define PRIORITY                                                           \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-ECDSA:" \
	"+ECDHE-RSA:-CIPHER-ALL:+AES-128-GCM:+CHACHA20-POLY1305:"          \
	"+AES-256-GCM:-MAC-ALL:+AEAD:-GROUP-ALL:+GROUP-X25519:"            \
	"+GROUP-SECP256R1:+GROUP-X448:+GROUP-SECP384R1:+GROUP-SECP521R1:"  \
	"%SERVER_PRECEDENCE"
#define REQ_MAX 4096
#define CHUNK 16384

enum { C_HANDSHAKE, C_READ, C_WRITE };

typedef struct {
	ev_io w;
	gnutls_session_t s;
	int fd, state;
	size_t reqlen;
	char *req;                /* REQ_MAX bytes while a request is read */
	char head[128];
	size_t headlen, headoff; /* response header still to send */
	unsigned long long body;  /* response body bytes still to send */
	int small;                /* body is "ok\n" */
	int pending;              /* a record_send returned EAGAIN */
	size_t pendlen;
	/* -R: bytes read ahead, a flight gathered while corked */
	unsigned char *in, *out;
	size_t inlen, inoff, outlen, outoff, outcap;
	int corked, drained;
} Conn;

static gnutls_certificate_credentials_t cred;
static gnutls_priority_t prio;
static gnutls_datum_t ticket_key;
static int tickets, transport;
static char chunk[CHUNK];
static struct ev_loop *loop;

static void conn_cb(struct ev_loop *l, ev_io *w, int revents);

/* -R transport ------------------------------------------------------------ */
#define READ_AHEAD 4096

static ssize_t ra_pull(gnutls_transport_ptr_t p, void *data, size_t n)
{
	Conn *c = (Conn *)p;
	unsigned char ahead[READ_AHEAD];
	ssize_t r;
	if (c->inlen > c->inoff) {
		if (n > c->inlen - c->inoff)
			n = c->inlen - c->inoff;
		memcpy(data, c->in + c->inoff, n);
		c->inoff += n;
		if (c->inoff == c->inlen) {
			free(c->in);
			c->in = NULL;
			c->inlen = c->inoff = 0;
		}
		return (ssize_t)n;
	}
	if (c->drained) {
		c->drained = 0;
		gnutls_transport_set_errno(c->s, EAGAIN);
		return -1;
	}
	if (n >= READ_AHEAD) {
		r = recv(c->fd, data, n, 0);
		c->drained = r > 0 && (size_t)r < n;
	} else {
		r = recv(c->fd, ahead, READ_AHEAD, 0);
		c->drained = r > 0 && r < READ_AHEAD;
		if (r > (ssize_t)n) {
			if ((c->in = (unsigned char *)malloc((size_t)r - n)) == NULL) {
				gnutls_transport_set_errno(c->s, ENOMEM);
				return -1;
			}
			memcpy(c->in, ahead + n, (size_t)r - n);
			c->inlen = (size_t)r - n;
			c->inoff = 0;
			r = (ssize_t)n;
		}
		if (r > 0)
			memcpy(data, ahead, (size_t)r);
	}
	if (r < 0)
		gnutls_transport_set_errno(c->s, errno);
	return r;
}

/* 1 all sent, 0 would block, -1 error */
static int ra_flush(Conn *c)
{
	while (c->outlen > c->outoff) {
		ssize_t r = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
				 MSG_NOSIGNAL);
		if (r < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		c->outoff += (size_t)r;
	}
	free(c->out);
	c->out = NULL;
	c->outlen = c->outoff = c->outcap = 0;
	return 1;
}

/* Once the Certificate is queued, the ServerHello goes out, so that the
 * client works on it while this side signs (as luatls does). */
static int ra_hook(gnutls_session_t s, unsigned htype, unsigned when,
		   unsigned incoming, const gnutls_datum_t *msg)
{
	Conn *c = (Conn *)gnutls_transport_get_ptr(s);
	(void)htype;
	(void)when;
	(void)msg;
	if (!incoming && c->corked && c->outlen > c->outoff)
		(void)ra_flush(c);
	return 0;
}

static ssize_t ra_push(gnutls_transport_ptr_t p, const giovec_t *iov, int n)
{
	Conn *c = (Conn *)p;
	struct msghdr msg;
	ssize_t r, total = 0;
	int i;
	if (c->corked) {
		for (i = 0; i < n; i++) {
			size_t len = iov[i].iov_len;
			if (c->outlen + len > c->outcap) {
				size_t cap = c->outcap ? c->outcap : 4096;
				unsigned char *d;
				while (c->outlen + len > cap)
					cap *= 2;
				if ((d = (unsigned char *)realloc(c->out, cap)) == NULL) {
					gnutls_transport_set_errno(c->s, ENOMEM);
					return -1;
				}
				c->out = d;
				c->outcap = cap;
			}
			memcpy(c->out + c->outlen, iov[i].iov_base, len);
			c->outlen += len;
			total += (ssize_t)len;
		}
		return total;
	}
	if (c->outlen > c->outoff) {
		int f = ra_flush(c);
		if (f <= 0) {
			gnutls_transport_set_errno(c->s, f == 0 ? EAGAIN : errno);
			return -1;
		}
	}
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = (struct iovec *)(void *)iov;
	msg.msg_iovlen = (size_t)n;
	r = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
	if (r < 0)
		gnutls_transport_set_errno(c->s, errno);
	return r;
}

static void conn_close(Conn *c)
{
	ev_io_stop(loop, &c->w);
	if (c->state != C_HANDSHAKE)
		(void)gnutls_bye(c->s, GNUTLS_SHUT_WR); /* one attempt */
	gnutls_deinit(c->s);
	close(c->fd);
	free(c->req);
	free(c->in);
	free(c->out);
	free(c);
}

static void wait_for(Conn *c, int events)
{
	if ((c->w.events & (EV_READ | EV_WRITE)) != events) {
		ev_io_stop(loop, &c->w);
		ev_io_set(&c->w, c->fd, events);
	}
	ev_io_start(loop, &c->w);
}

static void wait_gnutls(Conn *c)
{
	wait_for(c, gnutls_record_get_direction(c->s) ? EV_WRITE : EV_READ);
}

/* Parses one complete request at the start of c->req; returns its length
 * or 0 when incomplete. */
static size_t parse_request(Conn *c)
{
	char *end, *p;
	size_t n;
	c->req[c->reqlen] = '\0';
	end = strstr(c->req, "\r\n\r\n");
	if (end == NULL)
		return 0;
	n = (size_t)(end - c->req) + 4;
	c->small = 1;
	c->body = 3;
	p = strstr(c->req, " /bulk/");
	if (p != NULL && p < end) {
		c->body = strtoull(p + 7, NULL, 10);
		c->small = 0;
	}
	c->headlen = (size_t)snprintf(c->head, sizeof c->head,
				      "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n",
				      c->body);
	c->headoff = 0;
	return n;
}

/* Sends what is left of the response; 1 done, 0 would block, -1 error. */
static int do_write(Conn *c)
{
	for (;;) {
		const char *p;
		size_t n;
		ssize_t r;
		if (c->headoff < c->headlen && c->small) {
			/* header and tiny body in one record, as a server would */
			char buf[160];
			memcpy(buf, c->head, c->headlen);
			memcpy(buf + c->headlen, "ok\n", 3);
			p = buf;
			n = c->headlen + 3;
		} else if (c->headoff < c->headlen) {
			p = c->head + c->headoff;
			n = c->headlen - c->headoff;
		} else if (c->body > 0) {
			p = chunk;
			n = c->body < CHUNK ? (size_t)c->body : CHUNK;
		} else {
			return 1;
		}
		if (c->pending)
			r = gnutls_record_send(c->s, NULL, 0);
		else
			r = gnutls_record_send(c->s, p, n);
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			c->pending = 1;
			return 0;
		}
		c->pending = 0;
		if (r < 0)
			return -1;
		if (c->headoff < c->headlen && c->small) {
			c->headoff = c->headlen;
			c->body = 0;
		} else if (c->headoff < c->headlen) {
			c->headoff += (size_t)r;
		} else {
			c->body -= (unsigned long long)r;
		}
	}
}

/* Reads and answers requests; returns -1 when the connection is done. */
static int do_read(Conn *c)
{
	for (;;) {
		size_t used;
		ssize_t r;
		if (c->req == NULL && (c->req = (char *)malloc(REQ_MAX)) == NULL)
			return -1;
		if (c->reqlen >= REQ_MAX - 1)
			return -1;
		r = gnutls_record_recv(c->s, c->req + c->reqlen,
				       REQ_MAX - 1 - c->reqlen);
		if ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) &&
		    c->inlen > c->inoff)
			continue; /* -R: read ahead, not yet taken */
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			if (c->reqlen == 0) { /* idle: no buffer, as nginx does */
				free(c->req);
				c->req = NULL;
			}
			wait_gnutls(c);
			return 0;
		}
		if (r <= 0) {
			if (r < 0 && !gnutls_error_is_fatal((int)r))
				continue;
			return -1;
		}
		c->reqlen += (size_t)r;
		while ((used = parse_request(c)) > 0) {
			int w;
			memmove(c->req, c->req + used, c->reqlen - used);
			c->reqlen -= used;
			c->state = C_WRITE;
			w = do_write(c);
			if (w < 0)
				return -1;
			if (w == 0) {
				wait_gnutls(c);
				return 0;
			}
			c->state = C_READ;
		}
	}
}

static void conn_cb(struct ev_loop *l, ev_io *w, int revents)
{
	Conn *c = (Conn *)w;
	int r;
	(void)l;
	(void)revents;
	if (c->outlen > c->outoff) { /* -R: the end of a flight */
		r = ra_flush(c);
		if (r < 0) {
			conn_close(c);
			return;
		}
		if (r == 0) {
			wait_for(c, EV_WRITE);
			return;
		}
	}
	if (c->state == C_HANDSHAKE) {
		c->corked = transport;
		c->drained = 0;
		do
			r = gnutls_handshake(c->s);
		while ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) &&
		       c->inlen > c->inoff);
		c->corked = 0;
		if (c->outlen > c->outoff) {
			int f = ra_flush(c);
			if (f < 0) {
				conn_close(c);
				return;
			}
			if (f == 0) {
				if (r == 0)
					c->state = C_READ;
				if (r == 0 || r == GNUTLS_E_AGAIN ||
				    r == GNUTLS_E_INTERRUPTED) {
					wait_for(c, EV_WRITE);
					return;
				}
			}
		}
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			wait_gnutls(c);
			return;
		}
		if (r < 0) {
			conn_close(c);
			return;
		}
		c->state = C_READ;
	}
	c->drained = 0;
	if (c->state == C_WRITE) {
		r = do_write(c);
		if (r < 0) {
			conn_close(c);
			return;
		}
		if (r == 0) {
			wait_gnutls(c);
			return;
		}
		c->state = C_READ;
	}
	if (do_read(c) < 0)
		conn_close(c);
}

static void accept_cb(struct ev_loop *l, ev_io *w, int revents)
{
	(void)revents;
	for (;;) {
		int fd = accept(w->fd, NULL, NULL), one = 1;
		Conn *c;
		if (fd < 0)
			return; /* EAGAIN, or out of descriptors: try on next event */
		if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c = (Conn *)calloc(1, sizeof *c);
		if (c == NULL || gnutls_init(&c->s, GNUTLS_SERVER | GNUTLS_NONBLOCK |
							    GNUTLS_NO_SIGNAL) < 0) {
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, cred);
		gnutls_priority_set(c->s, prio);
		if (tickets)
			gnutls_session_ticket_enable_server(c->s, &ticket_key);
		if (transport) {
			gnutls_transport_set_ptr(c->s, c);
			gnutls_transport_set_pull_function(c->s, ra_pull);
			gnutls_transport_set_vec_push_function(c->s, ra_push);
			gnutls_handshake_set_hook_function(c->s,
				GNUTLS_HANDSHAKE_CERTIFICATE_PKT, GNUTLS_HOOK_POST, ra_hook);
		} else {
			gnutls_transport_set_int(c->s, fd);
		}
		ev_io_init(&c->w, conn_cb, fd, EV_READ);
		conn_cb(l, &c->w, 0);
	}
}

static void stop_cb(struct ev_loop *l, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(l, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
	const char *addr = "127.0.0.1", *certfile = NULL, *keyfile = NULL;
	struct sockaddr_in sa;
	int opt, port = 0, fd, one = 1;
	ev_io accept_w;
	ev_signal sigterm_w, sigint_w;

	while ((opt = getopt(argc, argv, "a:p:c:k:TR")) != -1) {
		switch (opt) {
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'c': certfile = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'T': tickets = 1; break;
		case 'R': transport = 1; break;
		default:
			fprintf(stderr, "usage: baseline -p PORT -c CERT -k KEY [-T] [-R] [-a ADDR]\n");
			return 2;
		}
	}
	if (certfile == NULL || keyfile == NULL) {
		fprintf(stderr, "baseline: -c CERT and -k KEY are required\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	memset(chunk, 'x', sizeof chunk);
	if (gnutls_global_init() < 0 ||
	    gnutls_certificate_allocate_credentials(&cred) < 0 ||
	    gnutls_certificate_set_x509_key_file2(cred, certfile, keyfile,
						  GNUTLS_X509_FMT_PEM, NULL, 0) < 0 ||
	    gnutls_priority_init2(&prio, PRIORITY, NULL, 0) < 0 ||
	    gnutls_session_ticket_key_generate(&ticket_key) < 0) {
		fprintf(stderr, "baseline: cannot set up GnuTLS\n");
		return 1;
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	if (fd < 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4096) < 0 ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
		perror("baseline: listen");
		return 1;
	}
	loop = ev_default_loop(EVFLAG_AUTO);
	ev_io_init(&accept_w, accept_cb, fd, EV_READ);
	ev_io_start(loop, &accept_w);
	ev_signal_init(&sigterm_w, stop_cb, SIGTERM);
	ev_signal_start(loop, &sigterm_w);
	ev_signal_init(&sigint_w, stop_cb, SIGINT);
	ev_signal_start(loop, &sigint_w);
	ev_run(loop, 0);
	close(fd);
	gnutls_priority_deinit(prio);
	gnutls_certificate_free_credentials(cred);
	gnutls_free(ticket_key.data);
	gnutls_global_deinit();
	return 0;
}
