/* luatls.Session: one TLS connection. Each call makes one non-blocking
 * attempt; "would block" results say which direction to wait for. The
 * transport is either a non-blocking fd or an in-memory pair of buffers
 * that another event loop fills and drains. */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <gnutls/x509.h>

#include "internal.h"

#define SESSION_MT "luatls.Session"
#define RECV_CHUNK 16384
#define MAX_NONFATAL_RETRIES 16
/* attempt(): a driven attempt that needs Lua after all (see advance) */
#define HANDED_BACK 1

enum { S_NEW, S_OPEN, S_FAILED, S_CLOSED };

typedef struct {
	unsigned char *data;
	size_t len, off, cap;
} Buffer;

/* The cipher suites and groups a ClientHello offered, as IANA numbers in
 * the client's order, so a policy can say what the client wanted. Parsed
 * on the stack, then kept in a block of the size the hello needed:
 * nsuites suites, then ngroups groups. */
#define MAX_SUITES 128
#define MAX_GROUPS 32
typedef struct {
	unsigned nsuites, ngroups;
	unsigned short ids[MAX_SUITES + MAX_GROUPS];
} Offers;

typedef struct {
	gnutls_session_t s;
	luatls_ctx *c;
	int fd; /* -1: in-memory transport */
	int state;
	int server;
	int verify;
	int send_pending;
	int send_error; /* a GnuTLS error a send met after sending some */
	int refused_hello;
	int in_eof;
	int corked; /* socket transport: pushes gather in out (see fd_push) */
	int drained; /* the last recv emptied the socket (see fd_pull) */
	int peer_done; /* the peer's close_notify, or the end of its stream */
	int finishing; /* TLS 1.3 servers: Finished sent, the client's due */
	int early; /* the handshake returned early (early start), not over */
	unsigned hello_versions; /* servers: bit (minor) per TLS 1.x offered */
	int hello_seen;
	lua_State *hook_L; /* set while gnutls_handshake runs */
	int has_hook, in_hook, hook_failed;
	unsigned vstatus; /* what verification in the handshake found */
	int vchecked;
	Offers *offers; /* servers: what the ClientHello offered (policy) */
	Buffer in, out;
	char *hostname;    /* checked against the peer certificate */
	char *server_name; /* SNI sent by a client */
	luatls_resume rs;  /* resumption and early data (resume.c) */
	/* A handshake driven by an io watcher (luatls_session_drive): the
	 * watcher's pointer to this session, cleared by whichever of the two
	 * goes first, and the result of the attempt that ended the drive,
	 * held for the next sess:handshake(). */
	void **driver;
	int held, held_r, held_f, held_errno;
	int handed_back; /* a hello that may need the store: Lua's attempts */
} Session;

static int hello_hook(gnutls_session_t s, unsigned htype, unsigned when,
		      unsigned incoming, const gnutls_datum_t *msg);
static int session_verify_cb(gnutls_session_t s);

static Session *check_session(lua_State *L, int i)
{
	Session *ss = (Session *)luatls_checkudata(L, i, SESSION_MT);
	if (ss->state == S_CLOSED)
		luaL_error(L, "session is closed");
	return ss;
}

gnutls_session_t luatls_check_session(lua_State *L, int i, luatls_resume **rs,
				      int *open)
{
	Session *ss = check_session(L, i);
	*rs = &ss->rs;
	*open = ss->state == S_OPEN;
	return ss->s;
}

static int buffer_append(Buffer *b, const void *p, size_t n)
{
	if (b->off > 0 && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		unsigned char *d;
		if (b->off > 0) { /* compact before growing */
			memmove(b->data, b->data + b->off, b->len - b->off);
			b->len -= b->off;
			b->off = 0;
		}
		while (b->len + n > cap)
			cap *= 2;
		if (cap != b->cap) {
			d = (unsigned char *)realloc(b->data, cap);
			if (d == NULL)
				return -1;
			b->data = d;
			b->cap = cap;
		}
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static void buffer_free(Buffer *b)
{
	free(b->data);
	memset(b, 0, sizeof *b);
}

/* In-memory transport: GnuTLS writes into out and reads from in. */
static ssize_t mem_push(gnutls_transport_ptr_t p, const void *data, size_t n)
{
	Session *ss = (Session *)p;
	if (buffer_append(&ss->out, data, n) < 0) {
		gnutls_transport_set_errno(ss->s, ENOMEM);
		return -1;
	}
	return (ssize_t)n;
}

static ssize_t mem_pull(gnutls_transport_ptr_t p, void *data, size_t n)
{
	Session *ss = (Session *)p;
	size_t avail = ss->in.len - ss->in.off;
	if (avail == 0) {
		if (ss->in_eof)
			return 0;
		gnutls_transport_set_errno(ss->s, EAGAIN);
		return -1;
	}
	if (n > avail)
		n = avail;
	memcpy(data, ss->in.data + ss->in.off, n);
	ss->in.off += n;
	return (ssize_t)n;
}

static int mem_pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
	Session *ss = (Session *)p;
	(void)ms;
	return (ss->in.len > ss->in.off || ss->in_eof) ? 1 : 0;
}

/* Socket transport with read-ahead. GnuTLS pulls a record in two reads,
 * its 5-byte header and then its body, so a handshake costs about a dozen
 * recv calls. A small pull reads up to READ_AHEAD bytes instead, usually
 * a whole flight, and keeps what GnuTLS did not ask for in ss->in (on the
 * heap, only while it holds bytes: an idle connection keeps nothing).
 * Large pulls (record bodies in a transfer) go straight to the caller's
 * memory. Callers only wait for the socket after an attempt would block,
 * and a pull only says "would block" when ss->in is empty, so the bytes
 * kept here are never left waiting for a readiness that will not come.
 * sess:pending() counts them. A recv that returns less than it asked for
 * has emptied the socket: the next pull in the same call (GnuTLS looking
 * for the peer's next flight right after reading this one) says "would
 * block" without asking the kernel again. Only once, and only within one
 * call: should bytes have come meanwhile, the socket is readable and the
 * caller's wait ends at once. */
#define READ_AHEAD 4096

static ssize_t fd_pull(gnutls_transport_ptr_t p, void *data, size_t n)
{
	Session *ss = (Session *)p;
	size_t avail = ss->in.len - ss->in.off;
	char ahead[READ_AHEAD];
	ssize_t r;
	if (avail > 0) {
		if (n > avail)
			n = avail;
		memcpy(data, ss->in.data + ss->in.off, n);
		ss->in.off += n;
		if (ss->in.off == ss->in.len)
			buffer_free(&ss->in);
		return (ssize_t)n;
	}
	if (ss->drained) {
		ss->drained = 0;
		gnutls_transport_set_errno(ss->s, EAGAIN);
		return -1;
	}
	if (n >= sizeof ahead) {
		r = recv(ss->fd, data, n, 0);
		ss->drained = r > 0 && (size_t)r < n;
	} else {
		r = recv(ss->fd, ahead, sizeof ahead, 0);
		ss->drained = r > 0 && (size_t)r < sizeof ahead;
		if (r > (ssize_t)n) { /* ss->in is empty and freed */
			ss->in.data = (unsigned char *)malloc((size_t)r - n);
			if (ss->in.data == NULL) {
				gnutls_transport_set_errno(ss->s, ENOMEM);
				return -1;
			}
			memcpy(ss->in.data, ahead + n, (size_t)r - n);
			ss->in.len = ss->in.cap = (size_t)r - n;
			ss->in.off = 0;
			r = (ssize_t)n;
		}
		if (r > 0)
			memcpy(data, ahead, (size_t)r);
	}
	if (r < 0)
		gnutls_transport_set_errno(ss->s, errno);
	return r;
}

/* Bytes read from the socket that GnuTLS has not taken yet. */
static int read_ahead_left(const Session *ss)
{
	return ss->fd >= 0 && ss->in.len > ss->in.off;
}

static int fd_pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
	Session *ss = (Session *)p;
	struct pollfd pfd;
	int r;
	if (read_ahead_left(ss))
		return 1;
	pfd.fd = ss->fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	r = poll(&pfd, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
	if (r < 0)
		gnutls_transport_set_errno(ss->s, errno);
	return r;
}

/* Sends what a handshake gathered in ss->out: 1 when all is out (the
 * buffer freed), 0 when the socket would block, -1 on error (errno). */
static int flush_out(Session *ss)
{
	while (ss->out.len > ss->out.off) {
		ssize_t r = send(ss->fd, ss->out.data + ss->out.off,
				 ss->out.len - ss->out.off, MSG_NOSIGNAL);
		if (r < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ||
			       errno == EINTR ? 0 : -1;
		ss->out.off += (size_t)r;
	}
	buffer_free(&ss->out);
	return 1;
}

/* Socket transport, sending. While a handshake step runs (corked), what
 * GnuTLS pushes gathers in ss->out and goes out in one send when the step
 * ends: a server's flight is otherwise two (its ServerHello, then the
 * encrypted rest), and a send over loopback costs far more than a copy.
 * Anything still gathered goes out before newer bytes, in order. */
static ssize_t fd_push(gnutls_transport_ptr_t p, const giovec_t *iov, int n)
{
	Session *ss = (Session *)p;
	struct msghdr msg;
	ssize_t r, total = 0;
	int i;
	if (ss->corked) {
		for (i = 0; i < n; i++) {
			if (buffer_append(&ss->out, iov[i].iov_base,
					  iov[i].iov_len) < 0) {
				gnutls_transport_set_errno(ss->s, ENOMEM);
				return -1;
			}
			total += (ssize_t)iov[i].iov_len;
		}
		return total;
	}
	if (ss->out.len > ss->out.off) {
		int f = flush_out(ss);
		if (f <= 0) {
			gnutls_transport_set_errno(ss->s, f == 0 ? EAGAIN : errno);
			return -1;
		}
	}
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = (struct iovec *)(uintptr_t)iov;
	msg.msg_iovlen = (size_t)n;
	r = sendmsg(ss->fd, &msg, MSG_NOSIGNAL);
	if (r < 0)
		gnutls_transport_set_errno(ss->s, errno);
	return r;
}

static char *dupstring(const char *s)
{
	char *d;
	if (s == NULL)
		return NULL;
	d = (char *)malloc(strlen(s) + 1);
	if (d != NULL)
		strcpy(d, s);
	return d;
}

/* core.session(ctx, { fd = n, server_name = s, hostname = s, verify = b })
 * -> Session. Without fd the session uses the in-memory transport. */
int luatls_session_new(lua_State *L)
{
	static const char *const options[] = {"fd", "hostname", "server_name",
					      "verify", "anti_replay", "early_data",
					      "replay_window", "resumption",
					      "session", "session_cache",
					      "ticket_lifetime", NULL};
	luatls_ctx *c = luatls_check_ctx(L, 1);
	Session *ss;
	const char *hostname, *server_name;
	int r, verify, fd = -1;
	unsigned flags;

	if (lua_isnoneornil(L, 2))
		lua_newtable(L);
	luatls_checkoptions(L, 2, options);
	lua_getfield(L, 2, "fd");
	if (!lua_isnil(L, -1)) {
		if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
			return luaL_argerror(L, 2, "option 'fd' must be a file descriptor");
		fd = (int)lua_tointeger(L, -1);
	}
	lua_pop(L, 1);
	hostname = luatls_optfield_string(L, 2, "hostname");
	server_name = luatls_optfield_string(L, 2, "server_name");
	verify = luatls_optfield_boolean(L, 2, "verify", 1);

	ss = (Session *)luatls_newobject(L, sizeof *ss, SESSION_MT);
	ss->fd = fd;
	ss->server = c->server;
	ss->verify = verify;
	ss->state = S_NEW;
	/* Early start: see attempt() */
	flags = (c->server ? GNUTLS_SERVER | GNUTLS_ENABLE_EARLY_START
			   : GNUTLS_CLIENT) |
		GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL |
		luatls_resume_flags(L, 2, c->server);
	r = gnutls_init(&ss->s, flags);
	if (r < 0) {
		ss->state = S_CLOSED;
		return luaL_error(L, "cannot create session: %s",
				  gnutls_strerror(r));
	}
	ss->c = c; /* its own reference: the Context may be collected first */
	luatls_ctx_ref(c);

	r = gnutls_credentials_set(ss->s, GNUTLS_CRD_CERTIFICATE, c->cred);
	if (r == 0)
		r = gnutls_priority_set(ss->s, c->prio);
	if (r == 0 && c->nalpn > 0)
		r = gnutls_alpn_set_protocols(ss->s, c->alpn, c->nalpn, 0);
	if (r == 0)
		r = luatls_resume_setup(L, 2, -1, ss->s, &ss->rs, c);
	if (r < 0)
		return luaL_error(L, "cannot set up session: %s",
				  gnutls_strerror(r));

	gnutls_session_set_ptr(ss->s, ss);
	if (c->server) {
		gnutls_handshake_set_hook_function(ss->s, GNUTLS_HANDSHAKE_ANY,
						   GNUTLS_HOOK_BOTH, hello_hook);
		gnutls_certificate_server_set_request(ss->s, c->client_auth);
	} else {
		ss->hostname = dupstring(hostname);
		ss->server_name = dupstring(server_name);
		if ((hostname && !ss->hostname) ||
		    (server_name && !ss->server_name))
			return luaL_error(L, "out of memory");
		if (server_name != NULL) {
			r = gnutls_server_name_set(ss->s, GNUTLS_NAME_DNS,
						   server_name,
						   strlen(server_name));
			if (r < 0)
				return luaL_error(L, "invalid server_name: %s",
						  gnutls_strerror(r));
		}
	}
	gnutls_session_set_verify_function(ss->s, session_verify_cb);

	gnutls_transport_set_ptr(ss->s, ss);
	if (fd >= 0) {
		gnutls_transport_set_vec_push_function(ss->s, fd_push);
		gnutls_transport_set_pull_function(ss->s, fd_pull);
		gnutls_transport_set_pull_timeout_function(ss->s,
							   fd_pull_timeout);
	} else {
		gnutls_transport_set_push_function(ss->s, mem_push);
		gnutls_transport_set_pull_function(ss->s, mem_pull);
		gnutls_transport_set_pull_timeout_function(ss->s,
							   mem_pull_timeout);
	}
	return 1;
}

static unsigned rd16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* Records what a ClientHello offers: versions (supported_versions, else
 * the legacy version), cipher suites, groups and whether it carries early
 * data, so that failures and policies can say what the client wanted.
 * Stops quietly at anything malformed. */
static void parse_client_hello(Session *ss, const unsigned char *p, size_t n,
			       Offers *o, unsigned short *groups)
{
	size_t i, end, len;
	if (n >= 4 && p[0] == 1 && ((size_t)p[1] << 16 | rd16(p + 2)) == n - 4) {
		p += 4; /* handshake header */
		n -= 4;
	}
	if (n < 35 || p[0] != 3)
		return;
	ss->hello_seen = 1;
	if (p[1] <= 4)
		ss->hello_versions = 1u << p[1];
	i = 34;
	i += 1 + (size_t)p[i]; /* session id */
	if (i + 2 > n)
		return;
	len = rd16(p + i);
	i += 2;
	for (end = i + len; i + 2 <= end && i + 2 <= n; i += 2)
		if (o->nsuites < MAX_SUITES)
			o->ids[o->nsuites++] = (unsigned short)rd16(p + i);
	i = end;
	if (i + 1 > n)
		return;
	i += 1 + (size_t)p[i]; /* compression methods */
	if (i + 2 > n)
		return;
	len = rd16(p + i);
	i += 2;
	if (i + len < n)
		n = i + len;
	while (i + 4 <= n) {
		unsigned type = rd16(p + i);
		size_t elen = rd16(p + i + 2), j;
		const unsigned char *e = p + i + 4;
		i += 4 + elen;
		if (i > n)
			return;
		if (type == 43 && elen >= 1) { /* supported_versions */
			unsigned v = 0;
			for (j = 1; j + 1 <= (size_t)e[0] && j + 1 < elen; j += 2)
				if (e[j] == 3 && e[j + 1] <= 4)
					v |= 1u << e[j + 1];
			ss->hello_versions = v;
		} else if (type == 10 && elen >= 2) { /* supported_groups */
			for (j = 2; j + 2 <= elen && j < 2 + (size_t)rd16(e); j += 2)
				if (o->ngroups < MAX_GROUPS)
					groups[o->ngroups++] = (unsigned short)rd16(e + j);
		} else if (type == 42) { /* early_data */
			ss->rs.early_offered = 1;
		}
	}
}

/* Parses the hello and keeps what it offered in a block of its size. */
static void record_client_hello(Session *ss, const unsigned char *p, size_t n)
{
	Offers o;
	unsigned short groups[MAX_GROUPS];
	o.nsuites = o.ngroups = 0;
	parse_client_hello(ss, p, n, &o, groups);
	memcpy(o.ids + o.nsuites, groups, o.ngroups * sizeof groups[0]);
	free(ss->offers); /* a hello seen before was malformed */
	ss->offers = (Offers *)malloc(offsetof(Offers, ids) +
				      (o.nsuites + o.ngroups) * sizeof o.ids[0]);
	if (ss->offers != NULL) /* else offered() reports empty lists */
		memcpy(ss->offers, &o, offsetof(Offers, ids) +
		       (o.nsuites + o.ngroups) * sizeof o.ids[0]);
}

/* A server's handshake hook: records the ClientHello; and once its
 * Certificate is queued, sends what the step has gathered so far (the
 * ServerHello), so that the client works on its key share while this
 * side signs: one send for the whole flight would make the two wait for
 * each other (0.1 ms more to the first byte, measured). A resumed
 * handshake signs nothing and keeps its flight in one send. Notes when a
 * TLS 1.3 Finished is queued (see attempt). */
static int hello_hook(gnutls_session_t s, unsigned htype, unsigned when,
		      unsigned incoming, const gnutls_datum_t *msg)
{
	Session *ss = (Session *)gnutls_session_get_ptr(s);
	if (ss == NULL)
		return 0;
	if (htype == GNUTLS_HANDSHAKE_CLIENT_HELLO && when == GNUTLS_HOOK_PRE &&
	    incoming && msg != NULL && !ss->hello_seen)
		record_client_hello(ss, msg->data, msg->size);
	else if (htype == GNUTLS_HANDSHAKE_CERTIFICATE_PKT &&
		 when == GNUTLS_HOOK_POST && !incoming && ss->corked &&
		 ss->out.len > ss->out.off)
		(void)flush_out(ss); /* else the end of the step sends it */
	else if (htype == GNUTLS_HANDSHAKE_FINISHED &&
		 when == GNUTLS_HOOK_POST && !incoming &&
		 gnutls_protocol_get_version(s) == GNUTLS_TLS1_3)
		ss->finishing = 1; /* see attempt */
	return 0;
}

/* Versions enabled here, as bits (minor) like hello_versions. */
static unsigned enabled_versions(Session *ss)
{
	const unsigned *list;
	unsigned v = 0;
	int i, n = gnutls_priority_protocol_list(ss->c->prio, &list);
	for (i = 0; i < n; i++)
		if (list[i] >= GNUTLS_TLS1_0 && list[i] <= GNUTLS_TLS1_3)
			v |= 1u << (list[i] - GNUTLS_TLS1_0 + 1);
	return v;
}

static void push_versions(lua_State *L, unsigned bits)
{
	int minor, n = 0;
	lua_newtable(L);
	for (minor = 4; minor >= 1; minor--)
		if (bits & (1u << minor)) {
			lua_pushfstring(L, "TLS1.%d", minor - 1);
			lua_rawseti(L, -2, ++n);
		}
}

static int would_block(lua_State *L, Session *ss)
{
	return luatls_wouldblock(L, !ss->finishing &&
				 gnutls_record_get_direction(ss->s));
}

/* "certificate_required"-style name of an alert, from GnuTLS's
 * "GNUTLS_A_CERTIFICATE_REQUIRED". */
static void push_alert_name(lua_State *L, int alert)
{
	const char *n = gnutls_alert_get_strname((gnutls_alert_description_t)alert);
	char buf[64];
	size_t i;
	if (n == NULL) {
		lua_pushliteral(L, "unknown");
		return;
	}
	if (strncmp(n, "GNUTLS_A_", 9) == 0)
		n += 9;
	for (i = 0; n[i] != '\0' && i < sizeof buf - 1; i++)
		buf[i] = (char)(n[i] >= 'A' && n[i] <= 'Z' ? n[i] - 'A' + 'a' : n[i]);
	buf[i] = '\0';
	lua_pushstring(L, buf);
}

/* nil, "<what>: the peer sent a fatal alert: <name> (<number>)", code */
static int fail_alert(lua_State *L, Session *ss, const char *what)
{
	int alert = (int)gnutls_alert_get(ss->s);
	ss->state = S_FAILED;
	lua_pushnil(L);
	push_alert_name(L, alert);
	lua_pushfstring(L, "%s: the peer sent a fatal alert: %s (%d)", what,
			lua_tostring(L, -1), alert);
	lua_remove(L, -2);
	lua_pushliteral(L, "GNUTLS_E_FATAL_ALERT_RECEIVED");
	return 3;
}

/* The number of an alert named "bad_certificate"-style, or -1. */
static int alert_by_name(const char *name)
{
	int i;
	for (i = 0; i < 256; i++) {
		const char *n = gnutls_alert_get_strname((gnutls_alert_description_t)i);
		if (n != NULL && strncmp(n, "GNUTLS_A_", 9) == 0 &&
		    strcasecmp(n + 9, name) == 0)
			return i;
	}
	return -1;
}

/* Runs the session's Lua hook, if any, while the handshake is on, so that
 * a peer a policy refuses gets the alert in the handshake. The hook runs
 * under lua_pcall on the stack of session_handshake, whose argument 1 is
 * the session; it returns true, or false, message [, alert name]. */
static int run_hook(Session *ss)
{
	lua_State *L;
	int r;
	if (!ss->has_hook || ss->hook_L == NULL)
		return 0;
	L = ss->hook_L;
	if (!lua_checkstack(L, 8))
		return -1;
	luatls_refs(L, 1);
	lua_getfield(L, -1, "hook");
	lua_pushvalue(L, 1);
	ss->in_hook = 1;
	r = lua_pcall(L, 1, 3, 0);
	ss->in_hook = 0;
	if (r != 0) {
		lua_pushfstring(L, "the policy check failed with an error: %s",
				lua_tostring(L, -1));
		lua_setfield(L, -3, "hook_error");
		lua_pop(L, 2);
		ss->hook_failed = 1;
		return -1;
	}
	if (lua_toboolean(L, -3)) {
		lua_pop(L, 4);
		return 0;
	}
	if (!lua_isstring(L, -2)) {
		lua_pushliteral(L, "refused by the policy check");
		lua_replace(L, -3);
	}
	lua_setfield(L, -4, "hook_alert");
	lua_setfield(L, -3, "hook_error");
	lua_pop(L, 2);
	ss->hook_failed = 1;
	return -1;
}

/* The session's verify callback: checks the peer's chain as
 * gnutls_session_set_verify_cert would (the name for clients, the client
 * purpose for servers), keeps the status, then runs the Lua hook. */
static int session_verify_cb(gnutls_session_t s)
{
	Session *ss = (Session *)gnutls_session_get_ptr(s);
	if (ss == NULL)
		return GNUTLS_E_CERTIFICATE_ERROR;
	if (gnutls_certificate_get_peers(s, NULL) == NULL)
		return 0; /* none sent: GnuTLS enforces a required one itself */
	if (ss->verify) {
		gnutls_typed_vdata_st data;
		unsigned n = 0, status = 0;
		if (ss->server) {
			data.type = GNUTLS_DT_KEY_PURPOSE_OID;
			data.data = (unsigned char *)(uintptr_t)GNUTLS_KP_TLS_WWW_CLIENT;
			data.size = 0;
			n = 1;
		} else if (ss->hostname != NULL) {
			data.type = GNUTLS_DT_DNS_HOSTNAME;
			data.data = (unsigned char *)ss->hostname;
			data.size = 0;
			n = 1;
		}
		if (gnutls_certificate_verify_peers(s, n ? &data : NULL, n, &status) < 0)
			return GNUTLS_E_CERTIFICATE_ERROR;
		ss->vstatus = status;
		ss->vchecked = 1;
		if (status != 0)
			return GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR;
	}
	return run_hook(ss);
}

/* The alert that tells the peer why its certificate was refused (GnuTLS
 * itself would say bad_certificate for everything). */
static gnutls_alert_description_t verify_alert(unsigned status)
{
	if (status & GNUTLS_CERT_REVOKED)
		return GNUTLS_A_CERTIFICATE_REVOKED;
	if (status & (GNUTLS_CERT_EXPIRED | GNUTLS_CERT_NOT_ACTIVATED))
		return GNUTLS_A_CERTIFICATE_EXPIRED;
	if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
		return GNUTLS_A_UNKNOWN_CA;
	if (status & GNUTLS_CERT_PURPOSE_MISMATCH)
		return GNUTLS_A_UNSUPPORTED_CERTIFICATE;
	return GNUTLS_A_BAD_CERTIFICATE;
}

/* Fails the session after a fatal handshake error, telling the peer why. */
static int handshake_failed(lua_State *L, Session *ss, int r)
{
	ss->state = S_FAILED;
	if (ss->server && ss->hello_seen && ss->hello_versions != 0 &&
	    (ss->hello_versions & enabled_versions(ss)) == 0) {
		/* GnuTLS calls this a cipher mismatch; it is a version one. */
		(void)gnutls_alert_send(ss->s, GNUTLS_AL_FATAL,
					GNUTLS_A_PROTOCOL_VERSION);
		return luatls_fail(L, "GNUTLS_E_UNSUPPORTED_VERSION_PACKET",
				   "handshake: %s", gnutls_strerror(
				   GNUTLS_E_UNSUPPORTED_VERSION_PACKET));
	}
	if (ss->hook_failed) {
		int alert;
		luatls_refs(L, 1);
		lua_getfield(L, -1, "hook_alert");
		alert = lua_isstring(L, -1) ? alert_by_name(lua_tostring(L, -1)) : -1;
		(void)gnutls_alert_send(ss->s, GNUTLS_AL_FATAL,
					alert < 0 ? GNUTLS_A_BAD_CERTIFICATE
						  : (gnutls_alert_description_t)alert);
		lua_pushnil(L);
		lua_getfield(L, -3, "hook_error");
		lua_pushliteral(L, "policy");
		return 3;
	}
	if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		(void)gnutls_alert_send(ss->s, GNUTLS_AL_FATAL,
					verify_alert(ss->vstatus));
		return luatls_fail_gnutls(L, r, "handshake");
	}
	if (r != GNUTLS_E_FATAL_ALERT_RECEIVED && r != GNUTLS_E_PUSH_ERROR &&
	    r != GNUTLS_E_PULL_ERROR && r != GNUTLS_E_PREMATURE_TERMINATION)
		(void)gnutls_alert_send_appropriate(ss->s, r);
	if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
		return fail_alert(L, ss, "handshake");
	return luatls_fail_gnutls(L, r, "handshake");
}

/* The peer went away while a flight was being sent. */
static int flight_failed(lua_State *L, Session *ss)
{
	ss->state = S_FAILED;
	buffer_free(&ss->out);
	if (errno == EPIPE || errno == ECONNRESET)
		return luatls_fail(L, "closed", "handshake: the peer closed "
				   "the connection");
	return luatls_fail(L, "GNUTLS_E_PUSH_ERROR", "handshake: send: %s",
			   strerror(errno));
}

/* TLS record content types, and the largest TLS 1.3 record body */
#define RECORD_CCS 20
#define RECORD_APPLICATION_DATA 23
#define RECORD_HANDSHAKE 22
#define MAX_RECORD_BODY (16384 + 256)

/* Takes what the socket has into ss->in, for a look at the peer's next
 * record before GnuTLS reads it: 1 when the socket (or the feed) has
 * nothing more for now, so that a readiness will come should the record
 * not be whole yet; 0 when it may have more (ss->in holds enough to
 * look at), or the stream ended or failed: GnuTLS then reads on and
 * judges. */
static int take_ahead(Session *ss)
{
	char ahead[READ_AHEAD];
	ssize_t r;
	if (ss->fd < 0)
		return !ss->in_eof;
	if (ss->in.len - ss->in.off >= sizeof ahead)
		return 0;
	r = recv(ss->fd, ahead, sizeof ahead, 0);
	if (r == 0 ||
	    (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		return 0;
	if (r > 0 && buffer_append(&ss->in, ahead, (size_t)r) < 0)
		return 0;
	if (r == (ssize_t)sizeof ahead)
		return 0;
	ss->drained = 1; /* the socket is empty for now */
	return 1;
}

/* Whether the client's next record is here whole, for a TLS 1.3 server
 * whose own Finished is out (see attempt): the record that carries the
 * client's Finished (or its certificate, when one was requested). A
 * ChangeCipherSpec the client sent on its own ahead of it (GnuTLS clients
 * send theirs as soon as they have the ServerHello) does not count. 0
 * only while it is not and a readiness will come (take_ahead); 1 for
 * anything else (that record, any other bytes, the end of the stream, an
 * error), which GnuTLS then reads and judges. */
static int finished_here(Session *ss)
{
	const unsigned char *p;
	size_t n, len;
	if (!take_ahead(ss))
		return 1;
	p = ss->in.data + ss->in.off;
	n = ss->in.len - ss->in.off;
	if (n >= 6 && p[0] == RECORD_CCS && p[3] == 0 && p[4] == 1) {
		p += 6;
		n -= 6;
	}
	if (n < 5)
		return 0;
	len = rd16(p + 3);
	return p[0] != RECORD_APPLICATION_DATA || len > MAX_RECORD_BODY ||
	       n >= 5 + len;
}

/* For a server with a session-ID store whose ClientHello has not been
 * seen: whether that hello, once here, gets TLS 1.3, whose handshake
 * never calls the store (resumption is by ticket), so that the watcher
 * may make the attempts. Looks at the first record (and records what the
 * hello offers, as the handshake hook would). 1 yes; 0 not whole yet, a
 * readiness will come; -1 no, or not sure (a hello over several records,
 * bytes that are no hello): Lua makes the attempt. */
static int hello_gets_tls13(Session *ss)
{
	const unsigned char *p;
	size_t n, len, hlen;
	int more = take_ahead(ss);
	p = ss->in.data + ss->in.off;
	n = ss->in.len - ss->in.off;
	if (n < 5)
		return more ? 0 : -1;
	len = rd16(p + 3);
	if (p[0] != RECORD_HANDSHAKE || len > MAX_RECORD_BODY)
		return -1;
	if (n < 5 + len)
		return more ? 0 : -1;
	p += 5;
	if (len < 4 || p[0] != GNUTLS_HANDSHAKE_CLIENT_HELLO)
		return -1;
	hlen = (size_t)p[1] << 16 | rd16(p + 2);
	if (hlen > len - 4)
		return -1;
	record_client_hello(ss, p, hlen + 4);
	return (ss->hello_versions & enabled_versions(ss) & 1u << 4) ? 1 : -1;
}

/* One handshake attempt: gnutls_handshake's result, with *f telling
 * whether the flight it made went out (1), would block (0) or failed (-1,
 * errno set). L runs the hook and the stores; NULL for a driven session,
 * which has none.
 * A TLS 1.3 server whose Finished is out waits for the client's last
 * flight, and each time GnuTLS looks for it, it first computes the
 * Finished it expects from the client (a hash of the transcript and an
 * HMAC). So it is asked to look only once finished_here says the record
 * is here. And a server that requested no certificate and resumed
 * nothing returns as soon as its flight is made ("early start", asked
 * for in core.session), rather than look at once, before the client can
 * have answered (a resumed handshake still does, in the step that makes
 * its flight). For us the handshake is still not over: the attempt says
 * "again, for reading" until the client's Finished has come and checked
 * out. A driven server with a session-ID store first looks at the
 * ClientHello (hello_gets_tls13): HANDED_BACK when Lua must go on. */
static int attempt(Session *ss, lua_State *L, int *f)
{
	int r, tries = 0;
	ss->drained = 0;
	if (ss->finishing && !finished_here(ss)) {
		*f = 1;
		return GNUTLS_E_AGAIN;
	}
	if (L == NULL && ss->rs.cache && !ss->hello_seen) {
		int h = hello_gets_tls13(ss);
		*f = 1;
		if (h <= 0)
			return h == 0 ? GNUTLS_E_AGAIN : HANDED_BACK;
	}
	luatls_resume_enter(L, &ss->rs);
	ss->hook_L = L;
	ss->corked = ss->fd >= 0;
	/* GnuTLS may say "again" with bytes still read ahead (a server that
	 * has just taken a record of early data): go on, since no readiness
	 * of the socket would announce them. */
	do {
		r = gnutls_handshake(ss->s);
		if (r == 0 && ss->finishing && !ss->early &&
		    (gnutls_session_get_flags(ss->s) &
		     GNUTLS_SFLAGS_EARLY_START)) {
			ss->early = 1;
			r = GNUTLS_E_AGAIN;
		}
	} while (r < 0 && !gnutls_error_is_fatal(r) &&
		 ((r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED) ||
		  read_ahead_left(ss)) &&
		 ++tries < MAX_NONFATAL_RETRIES);
	ss->corked = 0;
	ss->hook_L = NULL;
	luatls_resume_leave(&ss->rs);
	*f = ss->fd >= 0 && ss->out.len > ss->out.off ? flush_out(ss) : 1;
	if (r == 0) {
		ss->state = S_OPEN;
		ss->finishing = 0; /* records go both ways now */
	}
	return r;
}

static int is_again(int r)
{
	return r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED;
}

/* Whether an attempt that returned r with flight state f wants another,
 * once the socket is ready: 0 no, else 1 for reading, 2 for writing. */
static int wants_more(Session *ss, int r, int f)
{
	if (f < 0 || (r < 0 && !is_again(r)))
		return 0;
	if (f == 0)
		return 2;
	if (r == 0)
		return 0;
	return !ss->finishing && gnutls_record_get_direction(ss->s) ? 2 : 1;
}

static void undrive(Session *ss)
{
	if (ss->driver != NULL) {
		*ss->driver = NULL;
		ss->driver = NULL;
	}
}

/* The session at arg i, if an io watcher may drive its handshake: a server
 * session over a socket, in its handshake, whose attempts run no Lua (the
 * watcher runs inside ev_run, where no Lua runs): no hook and no early
 * data; and a session-ID store only if the ClientHello gets TLS 1.3, whose
 * handshake never calls it (resumption is by ticket): before the hello
 * has come, the attempt looks at it first (hello_gets_tls13) and hands
 * the handshake back to Lua if it does not. NULL otherwise. */
void *luatls_session_driveable(lua_State *L, int i)
{
	Session *ss = check_session(L, i);
	if (!ss->server || ss->fd < 0 || ss->state != S_NEW || ss->held ||
	    ss->has_hook || ss->rs.early_max > 0 || ss->out.len > ss->out.off)
		return NULL;
	if (ss->rs.cache &&
	    (ss->handed_back || (ss->hello_seen && gnutls_protocol_get_version(
						       ss->s) != GNUTLS_TLS1_3)))
		return NULL;
	return ss;
}

/* Starts a drive: the watcher keeps its pointer to the session at *slot
 * (cleared here should the session close first). With now, makes the
 * first attempt: 0 when the handshake is over (its result held) or
 * handed back to Lua (nothing held: the next sess:handshake() makes the
 * attempt), else 1 or 2, the direction to wait for. Without, returns 1
 * (the caller knows what to wait for). */
int luatls_session_drive(void *p, void **slot, int now)
{
	Session *ss = (Session *)p;
	undrive(ss);
	*slot = ss;
	ss->driver = slot;
	return now ? luatls_session_advance(ss) : 1;
}

/* The next attempt of a driven handshake, when its socket is ready: as
 * luatls_session_drive. Over, the drive ends and the result is held;
 * handed back, the drive ends with nothing held. */
int luatls_session_advance(void *p)
{
	Session *ss = (Session *)p;
	int f, r, more;
	if (ss->out.len > ss->out.off) { /* the end of a flight, still to send */
		f = flush_out(ss);
		if (f == 0)
			return 2;
		r = ss->state == S_OPEN ? 0 : GNUTLS_E_AGAIN;
		if (f < 0 || r == 0)
			goto over;
	}
	r = attempt(ss, NULL, &f);
	if (r == HANDED_BACK) { /* Lua makes the attempts from here on */
		ss->handed_back = 1;
		undrive(ss);
		return 0;
	}
	more = wants_more(ss, r, f);
	if (more)
		return more;
over:
	ss->held = 1;
	ss->held_r = r;
	ss->held_f = f;
	ss->held_errno = errno;
	undrive(ss);
	return 0;
}

/* Whether a drive ended in an established session: its result is then
 * taken (sess:handshake() would report just that), and 1 returned. */
int luatls_session_drove_ok(void *p)
{
	Session *ss = (Session *)p;
	if (!ss->held || ss->held_r != 0 || ss->held_f <= 0)
		return 0;
	ss->held = 0;
	return 1;
}

/* The watcher stops driving (it closes, or is armed for something else). */
void luatls_session_undrive(void *p)
{
	undrive((Session *)p);
}

/* sess:handshake() -> true | nil, message, code */
static int session_handshake(lua_State *L)
{
	Session *ss = check_session(L, 1);
	int r, f;
	if (ss->held) { /* the end of a drive: report its last attempt */
		ss->held = 0;
		r = ss->held_r;
		f = ss->held_f;
		errno = ss->held_errno;
		goto report;
	}
	if (ss->driver != NULL) /* Lua takes over: the watcher stops trying */
		undrive(ss);
	if (ss->fd >= 0 && ss->out.len > ss->out.off &&
	    ss->state != S_FAILED) { /* the end of a flight, still to send */
		f = flush_out(ss);
		if (f == 0)
			return luatls_wouldblock(L, 1);
		if (f < 0)
			return flight_failed(L, ss);
	}
	if (ss->state == S_OPEN) {
		lua_pushboolean(L, 1);
		return 1;
	}
	if (ss->state == S_FAILED)
		return luatls_fail(L, "failed", "handshake: the session already failed");
	r = attempt(ss, L, &f);
report:
	if (r == 0) {
		if (f == 0) /* done, once the last flight is out */
			return luatls_wouldblock(L, 1);
		if (f < 0)
			return flight_failed(L, ss);
		lua_pushboolean(L, 1);
		return 1;
	}
	if (f < 0 && (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED))
		return flight_failed(L, ss);
	if (f == 0 && (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED))
		return luatls_wouldblock(L, 1);
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return would_block(L, ss);
	return handshake_failed(L, ss, r);
}

static int check_open(lua_State *L, Session *ss)
{
	if (ss->state == S_OPEN)
		return 0;
	if (ss->state == S_NEW)
		return luatls_fail(L, "handshake", "the handshake is not done");
	return luatls_fail(L, "failed", "the session has failed");
}

/* Refuses renegotiation, as auditors expect: a warning alert, no handshake. */
static void refuse_renegotiation(Session *ss)
{
	(void)gnutls_alert_send(ss->s, GNUTLS_AL_WARNING,
				GNUTLS_A_NO_RENEGOTIATION);
}

/* Reads what the next records hold into buf (at most max bytes): their
 * length, or 0 with the failure pushed (nil, message, code: "closed" at
 * the end, "wantread"/"wantwrite" when nothing has come), *pushed
 * values. */
static size_t recv_some(lua_State *L, Session *ss, char *buf, size_t max,
			int *pushed)
{
	ssize_t r;
	int tries = 0;
	ss->drained = 0;
	for (;;) {
		r = gnutls_record_recv(ss->s, buf, max);
		if (r > 0)
			return (size_t)r;
		if (r == 0) {
			ss->peer_done = 1;
			*pushed = luatls_fail(L, "closed", "closed");
			return 0;
		}
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			/* After a post-handshake message (a session ticket)
			 * GnuTLS may say "again" with records still buffered. */
			if ((gnutls_record_check_pending(ss->s) > 0 ||
			     read_ahead_left(ss) ||
			     (ss->fd < 0 && ss->in.len > ss->in.off)) &&
			    ++tries < MAX_NONFATAL_RETRIES)
				continue;
			*pushed = would_block(L, ss);
			return 0;
		}
		if (r == GNUTLS_E_REHANDSHAKE) {
			refuse_renegotiation(ss);
			ss->refused_hello = 1;
		} else if (r == GNUTLS_E_UNEXPECTED_PACKET && ss->refused_hello) {
			ss->refused_hello = 0; /* the refused hello, discarded */
		} else if (r == GNUTLS_E_PREMATURE_TERMINATION) {
			ss->peer_done = 1;
			*pushed = luatls_fail(L, "closed",
					      "the peer closed the connection "
					      "without close_notify");
			return 0;
		} else if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
			*pushed = fail_alert(L, ss, "receive");
			return 0;
		} else if (gnutls_error_is_fatal((int)r)) {
			ss->state = S_FAILED;
			*pushed = luatls_fail_gnutls(L, (int)r, "receive");
			return 0;
		}
		if (++tries >= MAX_NONFATAL_RETRIES) {
			*pushed = luatls_fail_gnutls(L, (int)r, "receive");
			return 0;
		}
	}
}

/* sess:recv([max]) -> data | nil, message, code ("closed" at the end) */
static int session_recv(lua_State *L)
{
	Session *ss = check_session(L, 1);
	lua_Integer max = luaL_optinteger(L, 2, RECV_CHUNK);
	char buf[RECV_CHUNK];
	size_t n;
	int pushed;
	if (check_open(L, ss))
		return 3;
	if (max <= 0 || max > RECV_CHUNK)
		max = RECV_CHUNK;
	n = recv_some(L, ss, buf, (size_t)max, &pushed);
	if (n == 0)
		return pushed;
	lua_pushlstring(L, buf, n);
	return 1;
}

/* sess:receive_line(buffered) -> line, rest | nil, message, code, data:
 * the first line of buffered followed by what the peer sends, without
 * its end of line ("\n" or "\r\n"), and what follows it; it reads
 * records only while buffered holds no line. Failing (would block
 * included), data is buffered with what was read before, for the next
 * call. The stream's receive("*l"): one call where a look at the buffer
 * and a read would be two or three. */
static int session_receive_line(lua_State *L)
{
	Session *ss = check_session(L, 1);
	size_t len, from = 0, last;
	const char *b = luaL_checklstring(L, 2, &len), *nl;
	lua_settop(L, 2);
	while ((nl = (const char *)memchr(b + from, '\n', len - from)) == NULL) {
		char buf[RECV_CHUNK];
		size_t n;
		int pushed;
		if (check_open(L, ss)) {
			lua_pushvalue(L, 2);
			return 4;
		}
		n = recv_some(L, ss, buf, sizeof buf, &pushed);
		if (n == 0) {
			lua_pushvalue(L, 2);
			return pushed + 1;
		}
		lua_pushlstring(L, buf, n);
		lua_concat(L, 2); /* buffered .. data, at 2 */
		from = len;
		b = lua_tolstring(L, 2, &len);
	}
	last = (size_t)(nl - b); /* the line's length with a "\r" */
	lua_pushlstring(L, b, last > 0 && b[last - 1] == '\r' ? last - 1 : last);
	lua_pushlstring(L, nl + 1, len - last - 1);
	return 2;
}

/* Fails a send with GnuTLS error r, saying why the peer went away when it
 * said so before closing. */
static int send_failed(lua_State *L, Session *ss, int r)
{
	if (r == GNUTLS_E_PUSH_ERROR || r == GNUTLS_E_PREMATURE_TERMINATION) {
		/* The peer may have said why before closing: read its alert. */
		char tmp[512];
		ss->drained = 0;
		if (r == GNUTLS_E_PUSH_ERROR &&
		    gnutls_record_recv(ss->s, tmp, sizeof tmp) ==
		    GNUTLS_E_FATAL_ALERT_RECEIVED)
			return fail_alert(L, ss, "send");
		ss->state = S_FAILED;
		return luatls_fail(L, "closed", "send: the peer closed the connection");
	}
	if (gnutls_error_is_fatal(r))
		ss->state = S_FAILED;
	return luatls_fail_gnutls(L, r, "send");
}

/* sess:send(data [, i]) -> bytes sent from position i on | nil, message,
 * code. Sends records until the data is out or the transport would block,
 * so that a large string costs one call, not one per 16 KiB record. Bytes
 * sent before a would-block or an error are returned first; the error
 * comes with the next call. After a would-block, call again with the same
 * data and position: GnuTLS finishes the record it started. */
static int session_send(lua_State *L)
{
	Session *ss = check_session(L, 1);
	size_t len, done = 0;
	const char *data = luaL_checklstring(L, 2, &len);
	lua_Integer i = luaL_optinteger(L, 3, 1);
	ssize_t r;
	if (check_open(L, ss))
		return 3;
	if (i < 1 || (size_t)i > len + 1)
		return luaL_argerror(L, 3, "position out of range");
	if (ss->send_error != 0) {
		r = ss->send_error;
		ss->send_error = 0;
		return send_failed(L, ss, (int)r);
	}
	data += i - 1;
	len -= (size_t)(i - 1);
	do {
		size_t n = len - done < RECV_CHUNK ? len - done : RECV_CHUNK;
		if (ss->send_pending)
			r = gnutls_record_send(ss->s, NULL, 0);
		else
			r = gnutls_record_send(ss->s, data + done, n);
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			ss->send_pending = 1;
			break;
		}
		ss->send_pending = 0;
		if (r <= 0)
			break;
		done += (size_t)r;
	} while (done < len);
	if (done > 0 || r == 0) {
		if (r < 0 && r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED)
			ss->send_error = (int)r;
		lua_pushinteger(L, (lua_Integer)done);
		return 1;
	}
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return would_block(L, ss);
	return send_failed(L, ss, (int)r);
}

/* sess:pending() -> bytes received and not yet returned by recv: decrypted
 * ones buffered inside GnuTLS, plus, over a socket, bytes read ahead and
 * not yet decrypted. Nonzero: recv has something without waiting. */
static int session_pending(lua_State *L)
{
	Session *ss = check_session(L, 1);
	lua_pushinteger(L, ss->state == S_OPEN
				   ? (lua_Integer)gnutls_record_check_pending(ss->s) +
				     (ss->fd >= 0 ? (lua_Integer)(ss->in.len - ss->in.off) : 0)
				   : 0);
	return 1;
}

/* sess:bye() -> true | nil, message, code: sends close_notify */
static int session_bye(lua_State *L)
{
	Session *ss = check_session(L, 1);
	int r;
	if (ss->state != S_OPEN) {
		lua_pushboolean(L, 1);
		return 1;
	}
	r = gnutls_bye(ss->s, GNUTLS_SHUT_WR);
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return would_block(L, ss);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "close_notify");
	lua_pushboolean(L, 1);
	return 1;
}

/* sess:feed(data) gives the in-memory transport bytes from the peer;
 * sess:feed() (no data) marks the end of the peer's stream. */
static int session_feed(lua_State *L)
{
	Session *ss = check_session(L, 1);
	size_t len;
	const char *data;
	if (ss->fd >= 0)
		return luaL_error(L, "feed: the session uses a file descriptor");
	if (lua_isnoneornil(L, 2)) {
		ss->in_eof = 1;
		return 0;
	}
	data = luaL_checklstring(L, 2, &len);
	if (buffer_append(&ss->in, data, len) < 0)
		return luaL_error(L, "out of memory");
	return 0;
}

/* sess:drain() -> the bytes the in-memory transport has for the peer */
static int session_drain(lua_State *L)
{
	Session *ss = check_session(L, 1);
	if (ss->fd >= 0)
		return luaL_error(L, "drain: the session uses a file descriptor");
	lua_pushlstring(L, (const char *)ss->out.data + ss->out.off,
			ss->out.len - ss->out.off);
	ss->out.off = ss->out.len = 0;
	return 1;
}

static void setfield_string(lua_State *L, const char *key, const char *value)
{
	if (value != NULL) {
		lua_pushstring(L, value);
		lua_setfield(L, -2, key);
	}
}

/* Verification status of the peer: what the handshake found, or, when
 * verification was turned off, what it would have found. */
static unsigned peer_status(Session *ss, int *checked)
{
	unsigned status = 0;
	*checked = 0;
	if (gnutls_certificate_get_peers(ss->s, NULL) == NULL)
		return 0;
	*checked = 1;
	/* a resumed session brings its peer's chain back unverified: check
	 * it again below, against today's trust */
	if (ss->verify && ss->vchecked && !gnutls_session_is_resumed(ss->s))
		return ss->vstatus;
	if (gnutls_certificate_verify_peers3(ss->s, ss->server ? NULL : ss->hostname,
					     &status) < 0)
		status = GNUTLS_CERT_INVALID;
	return status;
}

/* sess:verify_result() -> { status, reasons = {...}, text, checked } */
static int session_verify_result(lua_State *L)
{
	Session *ss = check_session(L, 1);
	int checked;
	unsigned status;
	gnutls_datum_t text;
	status = peer_status(ss, &checked);
	if (!checked && ss->vchecked)
		status = ss->vstatus;
	lua_createtable(L, 0, 5);
	lua_pushinteger(L, status);
	lua_setfield(L, -2, "status");
	lua_pushboolean(L, checked);
	lua_setfield(L, -2, "certificate");
	lua_pushboolean(L, ss->verify);
	lua_setfield(L, -2, "enforced");
	luatls_push_verify_reasons(L, status);
	lua_setfield(L, -2, "reasons");
	if (gnutls_certificate_verification_status_print(
		    status, GNUTLS_CRT_X509, &text, 0) == 0) {
		lua_pushlstring(L, (const char *)text.data, text.size);
		lua_setfield(L, -2, "text");
		gnutls_free(text.data);
	}
	setfield_string(L, "hostname", ss->hostname);
	return 1;
}

/* sess:info() -> what was negotiated */
static int session_info(lua_State *L)
{
	Session *ss = check_session(L, 1);
	gnutls_session_t s = ss->s;
	gnutls_datum_t alpn;
	int checked;
	unsigned status;
	lua_createtable(L, 0, 16);
	setfield_string(L, "role", ss->server ? "server" : "client");
	lua_pushboolean(L, ss->state == S_OPEN);
	lua_setfield(L, -2, "established");
	if (ss->state != S_OPEN && !ss->in_hook)
		return 1;
	setfield_string(L, "version",
			gnutls_protocol_get_name(gnutls_protocol_get_version(s)));
	setfield_string(L, "cipher", gnutls_ciphersuite_get(s));
	setfield_string(L, "cipher_algorithm",
			gnutls_cipher_get_name(gnutls_cipher_get(s)));
	setfield_string(L, "mac", gnutls_mac_get_name(gnutls_mac_get(s)));
	if (gnutls_group_get(s) != 0)
		setfield_string(L, "group", gnutls_group_get_name(gnutls_group_get(s)));
	if (gnutls_protocol_get_version(s) != GNUTLS_TLS1_3)
		setfield_string(L, "kx", gnutls_kx_get_name(gnutls_kx_get(s)));
	setfield_string(L, "signature",
			gnutls_sign_get_name(gnutls_sign_algorithm_get(s)));
	if (gnutls_alpn_get_selected_protocol(s, &alpn) == 0) {
		lua_pushlstring(L, (const char *)alpn.data, alpn.size);
		lua_setfield(L, -2, "alpn");
	}
	if (ss->server) {
		char name[256];
		size_t len = sizeof name;
		unsigned type;
		if (gnutls_server_name_get(s, name, &len, &type, 0) == 0 &&
		    type == GNUTLS_NAME_DNS) {
			lua_pushlstring(L, name, len);
			lua_setfield(L, -2, "server_name");
		}
	} else {
		setfield_string(L, "server_name", ss->server_name);
		setfield_string(L, "hostname", ss->hostname);
	}
	lua_pushboolean(L, gnutls_session_is_resumed(s));
	lua_setfield(L, -2, "resumed");
	luatls_resume_info(L, s, &ss->rs);
	status = peer_status(ss, &checked);
	lua_pushboolean(L, checked && status == 0);
	lua_setfield(L, -2, "verified");
	luatls_push_verify_reasons(L, status);
	lua_setfield(L, -2, "verify_reasons");
	{
		unsigned n = 0;
		gnutls_certificate_get_peers(s, &n);
		lua_pushinteger(L, n);
		lua_setfield(L, -2, "peer_certificates");
	}
	return 1;
}

/* sess:peer_certificates() -> { Certificate, ... } as the peer sent them */
static int session_peer_certificates(lua_State *L)
{
	Session *ss = check_session(L, 1);
	unsigned i, n = 0;
	const gnutls_datum_t *list = gnutls_certificate_get_peers(ss->s, &n);
	lua_createtable(L, (int)n, 0);
	for (i = 0; list != NULL && i < n; i++) {
		luatls_push_certificate(L, &list[i]);
		lua_rawseti(L, -2, (int)i + 1);
	}
	return 1;
}

/* sess:versions() -> { versions enabled here }, { versions the client
 * offered } (servers, once its ClientHello arrived) */
static int session_versions(lua_State *L)
{
	Session *ss = check_session(L, 1);
	push_versions(L, enabled_versions(ss));
	if (ss->server && ss->hello_seen) {
		push_versions(L, ss->hello_versions);
		return 2;
	}
	return 1;
}

/* sess:set_hook(fn | nil): fn(sess) runs in the handshake once the peer's
 * certificate has passed verification; it returns true, or false,
 * message [, alert name] to refuse the peer (code "policy"). It must not
 * yield. */
static int session_set_hook(lua_State *L)
{
	Session *ss = check_session(L, 1);
	if (!lua_isnil(L, 2))
		luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_settop(L, 2);
	luatls_setref(L, 1, "hook");
	ss->has_hook = !lua_isnil(L, 2);
	return 0;
}

/* sess:client_certificate() -> requested, sent: whether the server asked
 * this client for a certificate, and whether it sent one */
static int session_client_certificate(lua_State *L)
{
	Session *ss = check_session(L, 1);
	if (ss->server) {
		lua_pushboolean(L, ss->c->client_auth != GNUTLS_CERT_IGNORE);
		lua_pushboolean(L, gnutls_certificate_get_peers(ss->s, NULL) != NULL);
	} else {
		lua_pushboolean(L, gnutls_certificate_client_get_request_status(ss->s));
		lua_pushboolean(L, gnutls_certificate_get_ours(ss->s) != NULL);
	}
	return 2;
}

/* sess:offered() -> { suites = { n, ... }, groups = { n, ... } }: the IANA
 * numbers of the cipher suites and groups the client's hello offered
 * (servers; empty lists before the hello arrived) */
static int session_offered(lua_State *L)
{
	Session *ss = check_session(L, 1);
	const Offers *o = ss->offers;
	unsigned i, ns = o ? o->nsuites : 0, ng = o ? o->ngroups : 0;
	lua_createtable(L, 0, 2);
	lua_createtable(L, (int)ns, 0);
	for (i = 0; i < ns; i++) {
		lua_pushinteger(L, o->ids[i]);
		lua_rawseti(L, -2, (int)i + 1);
	}
	lua_setfield(L, -2, "suites");
	lua_createtable(L, (int)ng, 0);
	for (i = 0; i < ng; i++) {
		lua_pushinteger(L, o->ids[ns + i]);
		lua_rawseti(L, -2, (int)i + 1);
	}
	lua_setfield(L, -2, "groups");
	return 1;
}

/* sess:alert(name_or_number) sends a fatal alert ("bad_certificate", ...)
 * and fails the session: how a policy refuses a peer after the handshake.
 * -> true | nil, message, code */
static int session_alert(lua_State *L)
{
	Session *ss = check_session(L, 1);
	int a = -1, r, tries = 0;
	if (lua_type(L, 2) == LUA_TNUMBER) {
		a = (int)luaL_checkinteger(L, 2);
		if (gnutls_alert_get_strname((gnutls_alert_description_t)a) == NULL)
			a = -1;
	} else {
		a = alert_by_name(luaL_checkstring(L, 2));
	}
	if (a < 0)
		return luaL_argerror(L, 2, "unknown alert");
	if (ss->state == S_NEW)
		return luatls_fail(L, "handshake", "alert: the handshake is not done");
	do {
		r = gnutls_alert_send(ss->s, GNUTLS_AL_FATAL,
				      (gnutls_alert_description_t)a);
	} while ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) &&
		 ++tries < MAX_NONFATAL_RETRIES);
	ss->state = S_FAILED;
	if (r < 0)
		return luatls_fail_gnutls(L, r, "alert");
	lua_pushboolean(L, 1);
	return 1;
}

/* sess:fd() -> the file descriptor, or nil for the in-memory transport */
static int session_fd(lua_State *L)
{
	Session *ss = check_session(L, 1);
	if (ss->fd < 0)
		lua_pushnil(L);
	else
		lua_pushinteger(L, ss->fd);
	return 1;
}

/* One idempotent close for close, __gc and __close; never touches the fd,
 * which belongs to the socket. */
static int session_close(lua_State *L)
{
	Session *ss = (Session *)luatls_checkudata(L, 1, SESSION_MT);
	lua_pushboolean(L, ss->peer_done);
	if (ss->state == S_CLOSED && ss->s == NULL)
		return 1;
	ss->state = S_CLOSED;
	undrive(ss);
	if (ss->s != NULL) {
		gnutls_deinit(ss->s);
		ss->s = NULL;
	}
	if (ss->c != NULL) {
		luatls_ctx_unref(ss->c);
		ss->c = NULL;
	}
	buffer_free(&ss->in);
	buffer_free(&ss->out);
	free(ss->hostname);
	free(ss->server_name);
	free(ss->offers);
	ss->hostname = ss->server_name = NULL;
	ss->offers = NULL;
	luatls_resume_free(&ss->rs);
	return 1;
}

static int session_tostring(lua_State *L)
{
	static const char *const states[] = {"new", "open", "failed", "closed"};
	Session *ss = (Session *)luatls_checkudata(L, 1, SESSION_MT);
	lua_pushfstring(L, "luatls.Session (%s, %s): %p",
			ss->server ? "server" : "client", states[ss->state],
			(void *)ss);
	return 1;
}

static const luaL_Reg session_methods[] = {
	{"alert", session_alert},
	{"bye", session_bye},
	{"client_certificate", session_client_certificate},
	{"close", session_close},
	{"drain", session_drain},
	{"fd", session_fd},
	{"feed", session_feed},
	{"handshake", session_handshake},
	{"info", session_info},
	{"offered", session_offered},
	{"peer_certificates", session_peer_certificates},
	{"pending", session_pending},
	{"receive_line", session_receive_line},
	{"recv", session_recv},
	{"send", session_send},
	{"set_hook", session_set_hook},
	{"verify_result", session_verify_result},
	{"versions", session_versions},
	{NULL, NULL}
};

static const luaL_Reg session_meta[] = {
	{"__close", session_close},
	{"__gc", session_close},
	{"__tostring", session_tostring},
	{NULL, NULL}
};

void luatls_open_session(lua_State *L)
{
	luatls_newclass(L, SESSION_MT, session_methods, session_meta);
	lua_pushcfunction(L, luatls_session_new);
	lua_setfield(L, -2, "session");
}
