/* luatls.Acceptor: a server's accepts and handshakes, made in C. It
 * watches the listening socket; acc:accept() takes every connection
 * waiting there, makes its Session and starts its handshake, which an io
 * watcher and a timer of the acceptor's own then drive inside ev_run, as
 * w:drive does; acc:take() hands over each connection whose handshake is
 * over (or past its deadline, or needing Lua after all) with its Socket
 * and a Watcher for the stream. Lua runs once per connection, for its
 * handler, instead of at each accept and each step of the handshake.
 *
 * The acceptor reports its id to loop:step() when the listening socket
 * is readable or a handshake has ended: its owner then calls take() until
 * it returns nothing, accept(), and take() again. The handshakes that are
 * over go first: their clients wait for an answer and their state is
 * still in the cache, while each new connection's first attempt signs
 * (with RSA, 1.3 ms). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "internal.h"

#define ACCEPTOR_MT "luatls.Acceptor"
/* accepts per accept() call, so that a flood of connections cannot keep
 * the loop from the ones it already has */
#define ACCEPT_BATCH 64
/* finished records kept for the next connections */
#define SPARE_MAX 64

typedef struct Acceptor Acceptor;

/* One connection until it is taken: in the list of handshakes in
 * progress, then in the list of those over. Its Session is held in the
 * acceptor's references, keyed by the record's address. */
typedef struct Rec {
	Acceptor *acc;
	struct Rec *prev, *next;
	ev_io io;
	ev_timer timer;
	void *drive; /* the Session while driven: cleared by its close too */
	void *ss;    /* the Session, if it could be driven */
	int fd;
	int timed_out;
	int watched; /* io was started on fd: libev knows fd (see take) */
	double deadline; /* loop time */
	struct sockaddr_storage sa;
} Rec;

struct Acceptor {
	void *lc; /* the loop (a reference), NULL once closed */
	lua_Integer id;
	int lfd; /* the listening descriptor, -1 once stopped */
	int drive; /* drive handshakes (else every connection goes to Lua) */
	int listen_ready; /* the listening socket was readable */
	int marked;       /* the id is reported, and the owner has not come */
	double seconds;
	ev_io listen;
	Rec running, over; /* the two lists' heads */
	int nrunning, nover;
	Rec *spare;
	int nspare;
};

static void list_init(Rec *head)
{
	head->prev = head->next = head;
}

static void list_push(Rec *head, Rec *r)
{
	r->prev = head->prev;
	r->next = head;
	head->prev->next = r;
	head->prev = r;
}

static void list_remove(Rec *r)
{
	r->prev->next = r->next;
	r->next->prev = r->prev;
	r->prev = r->next = r;
}

/* Tells the owner (through the next loop:step) that there is work. */
static void report(Acceptor *a)
{
	if (!a->marked) {
		a->marked = 1;
		luatls_loop_ready(a->lc, a->id);
	}
}

/* A handshake is over (or past its deadline): to the list for take(). */
static void finish(Rec *r, int timed_out)
{
	Acceptor *a = r->acc;
	struct ev_loop *loop = luatls_loop_ev(a->lc);
	ev_io_stop(loop, &r->io);
	ev_timer_stop(loop, &r->timer);
	if (r->drive != NULL)
		luatls_session_undrive(r->drive);
	r->timed_out = timed_out;
	list_remove(r);
	a->nrunning--;
	list_push(&a->over, r);
	a->nover++;
	report(a);
}

static void rec_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	Rec *r = (Rec *)w->data;
	(void)revents;
	if (r->drive != NULL) {
		int more = luatls_session_advance(r->drive);
		if (more) {
			int ev = more == 2 ? EV_WRITE : EV_READ;
			if ((w->events & (EV_READ | EV_WRITE)) != ev) {
				ev_io_stop(loop, w);
				ev_io_modify(w, ev); /* the same descriptor */
				ev_io_start(loop, w);
			}
			return;
		}
	}
	finish(r, 0);
}

static void rec_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	finish((Rec *)w->data, 1);
}

static void listen_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	Acceptor *a = (Acceptor *)w->data;
	(void)revents;
	ev_io_stop(loop, w); /* accept() starts it again once the backlog is empty */
	a->listen_ready = 1;
	report(a);
}

static Rec *new_rec(Acceptor *a)
{
	Rec *r = a->spare;
	if (r != NULL) {
		a->spare = r->next;
		a->nspare--;
	} else {
		r = (Rec *)malloc(sizeof *r);
		if (r == NULL)
			return NULL;
	}
	memset(r, 0, sizeof *r);
	r->acc = a;
	r->fd = -1;
	r->prev = r->next = r;
	ev_io_init(&r->io, rec_io_cb, -1, EV_READ);
	r->io.data = r;
	ev_timer_init(&r->timer, rec_timer_cb, 0., 0.);
	r->timer.data = r;
	return r;
}

static void free_rec(Acceptor *a, Rec *r)
{
	if (a->nspare < SPARE_MAX) {
		r->next = a->spare;
		a->spare = r;
		a->nspare++;
	} else {
		free(r);
	}
}

/* Sets refs[r] to the value at the top (nil to drop it): [-1, +0]. refs
 * is at index t. */
static void set_anchor(lua_State *L, int t, Rec *r)
{
	lua_pushlightuserdata(L, r);
	lua_insert(L, -2);
	lua_rawset(L, t);
}

/* Drops every connection not taken yet: their descriptors are closed,
 * their drives ended, and with L (not while being collected, when the
 * Sessions may be gone already) their Sessions closed. The number. */
static int drop_all(lua_State *L, Acceptor *a, int refs)
{
	struct ev_loop *loop = luatls_loop_ev(a->lc);
	Rec *heads[2];
	int i, n = 0;
	heads[0] = &a->running;
	heads[1] = &a->over;
	for (i = 0; i < 2; i++) {
		while (heads[i]->next != heads[i]) {
			Rec *r = heads[i]->next;
			ev_io_stop(loop, &r->io);
			ev_timer_stop(loop, &r->timer);
			if (r->drive != NULL)
				luatls_session_undrive(r->drive);
			if (L != NULL) {
				lua_pushlightuserdata(L, r);
				lua_rawget(L, refs);
				lua_pop(L, luaL_callmeta(L, -1, "__close") ? 2 : 1);
				lua_pushnil(L);
				set_anchor(L, refs, r);
			}
			if (r->fd >= 0)
				close(r->fd);
			list_remove(r);
			free(r);
			n++;
		}
	}
	a->nrunning = a->nover = 0;
	while (a->spare != NULL) {
		Rec *r = a->spare;
		a->spare = r->next;
		free(r);
	}
	a->nspare = 0;
	return n;
}

static void stop_listening(Acceptor *a)
{
	if (a->lfd >= 0) {
		ev_io_stop(luatls_loop_ev(a->lc), &a->listen);
		a->lfd = -1;
		a->listen_ready = 0;
	}
}

static Acceptor *check_acceptor(lua_State *L, int i)
{
	Acceptor *a = (Acceptor *)luatls_checkudata(L, i, ACCEPTOR_MT);
	if (a->lc == NULL)
		luaL_error(L, "acceptor is closed");
	return a;
}

/* core.acceptor(loop, id, listening_socket, ctx, session_options, seconds
 * [, drive]) -> Acceptor, watching the socket at once. session_options:
 * core.session's, for every connection (its fd is set for each); seconds:
 * how long each handshake may take; drive false: no attempt is made in C,
 * every connection is handed over as soon as it is accepted (for servers
 * whose handshakes run Lua). */
static int acceptor_new(lua_State *L)
{
	lua_Integer id = luaL_checkinteger(L, 2);
	int lfd = luatls_check_listening(L, 3);
	luatls_ctx *c = luatls_check_ctx(L, 4);
	double seconds;
	Acceptor *a;
	luaL_checktype(L, 5, LUA_TTABLE);
	seconds = luatls_check_time(L, 6);
	luaL_argcheck(L, id > 0, 2, "watcher ids are positive integers");
	luaL_argcheck(L, c->server, 4, "a server context expected");
	luaL_argcheck(L, seconds >= 0., 6, "non-negative number expected");
	a = (Acceptor *)luatls_newobject(L, sizeof *a, ACCEPTOR_MT);
	a->lfd = -1; /* until it watches */
	a->id = id;
	a->drive = lua_isnoneornil(L, 7) || lua_toboolean(L, 7);
	a->seconds = seconds;
	list_init(&a->running);
	list_init(&a->over);
	ev_io_init(&a->listen, listen_cb, lfd, EV_READ);
	a->listen.data = a;
	a->lc = luatls_loop_ref(L, 1); /* given back by close */
	lua_newtable(L); /* references: the socket, context, options, sessions */
	lua_pushvalue(L, 3);
	lua_setfield(L, -2, "socket");
	lua_pushvalue(L, 4);
	lua_setfield(L, -2, "context");
	lua_pushvalue(L, 5);
	lua_setfield(L, -2, "options");
	lua_setuservalue(L, -2);
	a->lfd = lfd;
	ev_io_start(luatls_loop_ev(a->lc), &a->listen);
	return 1;
}

/* Makes the Session of r (its descriptor set) and starts its handshake;
 * runs protected (see acceptor_accept): [-0, +0] */
static int start_rec(lua_State *L)
{
	Rec *r = (Rec *)lua_touserdata(L, 1); /* 2: refs */
	Acceptor *a = r->acc;
	void *ss;
	lua_pushcfunction(L, luatls_session_new);
	lua_getfield(L, 2, "context");
	lua_getfield(L, 2, "options");
	lua_pushinteger(L, r->fd);
	lua_setfield(L, -2, "fd");
	lua_call(L, 2, 1);
	lua_pushvalue(L, -1);
	set_anchor(L, 2, r);
	ss = a->drive ? luatls_session_driveable(L, -1) : NULL;
	r->ss = ss;
	r->deadline = ev_now(luatls_loop_ev(a->lc)) + a->seconds;
	if (ss != NULL) {
		int more = luatls_session_drive(ss, &r->drive, 1);
		if (more) {
			struct ev_loop *loop = luatls_loop_ev(a->lc);
			ev_io_set(&r->io, r->fd, more == 2 ? EV_WRITE : EV_READ);
			ev_io_start(loop, &r->io);
			r->watched = 1;
			ev_timer_set(&r->timer, a->seconds, 0.);
			ev_timer_start(loop, &r->timer);
			list_push(&a->running, r);
			a->nrunning++;
			return 0;
		}
	}
	list_push(&a->over, r); /* for take(): over, or Lua's from the start */
	a->nover++;
	return 0;
}

/* acc:accept() -> n [, message]: accepts the connections waiting on the
 * listening socket (at most ACCEPT_BATCH) and starts their handshakes;
 * n of them are now the acceptor's. A connection whose session cannot be
 * made is closed, and the message says which and why (the first such).
 * nil, message, code when accept itself fails (out of descriptors, say):
 * the socket is left unwatched, and the next accept() tries again. Cheap
 * when nothing waits: it looks only after the socket was reported
 * readable. Connections whose handshake ended at its first attempt are
 * not reported: the owner calls take() after accept(). */
static int acceptor_accept(lua_State *L)
{
	Acceptor *a = check_acceptor(L, 1);
	int n = 0, failures = 0;
	a->marked = 0;
	if (!a->listen_ready || a->lfd < 0) {
		lua_pushinteger(L, 0);
		return 1;
	}
	lua_settop(L, 1);
	lua_getuservalue(L, 1); /* 2: refs */
	lua_getfield(L, 2, "socket");
	if (luatls_socket_fd(L, 3) != a->lfd) /* its number may be another's now */
		return luaL_error(L, "accept: the listening socket was closed "
				  "before the acceptor was stopped");
	lua_pop(L, 1);
	while (n + failures < ACCEPT_BATCH) {
		struct sockaddr_storage sa;
		Rec *r;
		int fd = luatls_accept_fd(a->lfd, &sa);
		if (fd < 0) {
			int e = errno;
			if (e != EAGAIN && n == 0 && failures == 0)
				return luatls_fail_errno(L, e, "accept");
			/* watched again: an empty backlog, or a failure that
			 * the next call reports */
			a->listen_ready = 0;
			ev_io_start(luatls_loop_ev(a->lc), &a->listen);
			break;
		}
		r = new_rec(a);
		if (r == NULL) {
			close(fd);
			if (failures++ == 0)
				lua_pushliteral(L, "a connection: out of memory");
			continue;
		}
		r->fd = fd;
		r->sa = sa;
		lua_pushcfunction(L, start_rec);
		lua_pushlightuserdata(L, r);
		lua_pushvalue(L, 2);
		if (lua_pcall(L, 2, 0, 0) != 0) {
			if (failures++ > 0) {
				lua_pop(L, 1); /* the first message is enough */
			} else {
				const char *why = lua_isstring(L, -1) ? lua_tostring(L, -1)
								  : "an error object";
				luatls_push_peer(L, &sa);
				lua_pushfstring(L, "connection from %s: %s",
						lua_tostring(L, -1), why);
				lua_replace(L, -3);
				lua_pop(L, 1);
			}
			lua_pushnil(L);
			set_anchor(L, 2, r);
			close(fd);
			free_rec(a, r);
			continue;
		}
		n++;
	}
	if (n + failures == ACCEPT_BATCH) {
		/* more may wait: watched again, they come the next turn,
		 * after the connections the loop has already */
		a->listen_ready = 0;
		ev_io_start(luatls_loop_ev(a->lc), &a->listen);
	}
	lua_pushinteger(L, n);
	if (failures > 0) {
		lua_pushvalue(L, 3); /* the first failure's message */
		return 2;
	}
	return 1;
}

/* acc:take(id) -> sess, sock, watcher, fd, peer, ok, timed_out, deadline
 * | nothing: a connection whose handshake is over, with its Socket, a new
 * io Watcher (id) for its stream, its descriptor, "address:port" of the
 * peer, whether the handshake succeeded (its result taken), whether it
 * ran past its deadline, and that deadline (loop time). ok false and
 * timed_out false: sess:handshake() says how it ended, or makes the next
 * attempt (a handshake that needs Lua). */
static int acceptor_take(lua_State *L)
{
	Acceptor *a = check_acceptor(L, 1);
	lua_Integer id = luaL_checkinteger(L, 2);
	Rec *r = a->over.next;
	int *sfd;
	luaL_argcheck(L, id > 0, 2, "watcher ids are positive integers");
	a->marked = 0;
	if (r == &a->over)
		return 0;
	lua_settop(L, 2);
	lua_getuservalue(L, 1); /* 3: refs */
	lua_pushlightuserdata(L, r);
	lua_rawget(L, 3);
	/* what may raise (memory) first, while r still holds everything */
	sfd = luatls_new_socket(L);
	luatls_loop_push_io(L, a->lc, id, r->fd, r->watched);
	lua_pushinteger(L, r->fd);
	luatls_push_peer(L, &r->sa);
	lua_pushboolean(L, !r->timed_out && r->ss != NULL &&
				   luatls_session_drove_ok(r->ss));
	lua_pushboolean(L, r->timed_out);
	lua_pushnumber(L, r->deadline);
	*sfd = r->fd; /* the Socket's now */
	lua_pushnil(L);
	set_anchor(L, 3, r);
	list_remove(r);
	a->nover--;
	free_rec(a, r);
	return 8;
}

/* acc:pending() -> connections accepted and not taken yet */
static int acceptor_pending(lua_State *L)
{
	Acceptor *a = check_acceptor(L, 1);
	lua_pushinteger(L, a->nrunning + a->nover);
	return 1;
}

/* acc:stop() stops accepting; handshakes in progress go on. Call it before
 * the listening socket is closed. */
static int acceptor_stop(lua_State *L)
{
	stop_listening(check_acceptor(L, 1));
	return 0;
}

/* acc:close() -> n: stops, and closes the n connections not taken. */
static int acceptor_close(lua_State *L)
{
	Acceptor *a = (Acceptor *)luatls_checkudata(L, 1, ACCEPTOR_MT);
	int n = 0;
	if (a->lc != NULL) {
		lua_settop(L, 1);
		lua_getuservalue(L, 1);
		stop_listening(a);
		n = drop_all(L, a, 2);
		luatls_loop_unref(a->lc);
		a->lc = NULL;
	}
	lua_pushinteger(L, n);
	return 1;
}

/* __gc: the Sessions, collected with it, may be finalized already: only
 * the acceptor's own resources go (each drive ends, from whichever side
 * goes first). */
static int acceptor_gc(lua_State *L)
{
	Acceptor *a = (Acceptor *)luatls_checkudata(L, 1, ACCEPTOR_MT);
	if (a->lc != NULL) {
		stop_listening(a);
		drop_all(NULL, a, 0);
		luatls_loop_unref(a->lc);
		a->lc = NULL;
	}
	return 0;
}

static int acceptor_tostring(lua_State *L)
{
	Acceptor *a = (Acceptor *)luatls_checkudata(L, 1, ACCEPTOR_MT);
	if (a->lc == NULL)
		lua_pushfstring(L, "luatls.Acceptor (closed): %p", (void *)a);
	else
		lua_pushfstring(L, "luatls.Acceptor (%d in handshake, %d ready%s): %p",
				a->nrunning, a->nover,
				a->lfd < 0 ? ", stopped" : "", (void *)a);
	return 1;
}

static const luaL_Reg acceptor_methods[] = {
	{"accept", acceptor_accept},
	{"close", acceptor_close},
	{"pending", acceptor_pending},
	{"stop", acceptor_stop},
	{"take", acceptor_take},
	{NULL, NULL}
};

static const luaL_Reg acceptor_meta[] = {
	{"__close", acceptor_close},
	{"__gc", acceptor_gc},
	{"__tostring", acceptor_tostring},
	{NULL, NULL}
};

void luatls_open_acceptor(lua_State *L)
{
	luatls_newclass(L, ACCEPTOR_MT, acceptor_methods, acceptor_meta);
	lua_pushcfunction(L, acceptor_new);
	lua_setfield(L, -2, "acceptor");
}
