/* luatls.Loop and luatls.Watcher: the libev reactor. libev callbacks only
 * record which watchers fired; loop:step() hands their ids to Lua, and Lua
 * decides what to resume. No Lua runs inside ev_run.
 *
 * An io watcher carries its own deadline: w:start(seconds) arms a timer in
 * the same object, and when the deadline passes first the watcher is
 * reported as -id instead of id. A wait with a timeout is one object and
 * two C calls (start, and stop if it timed out). */
#include <signal.h>
#include <stdlib.h>

#include <ev.h>

#include "internal.h"

#define LOOP_MT "luatls.Loop"
#define WATCHER_MT "luatls.Watcher"

typedef struct {
	int refs;
	int owned;
	struct ev_loop *loop;
	lua_Integer *ready;
	size_t nready, cap;
	int overflow;
	ev_timer step_timer;
} LoopCore;

typedef struct {
	LoopCore *lc;
} Loop;

enum { W_IO, W_TIMER, W_SIGNAL };

typedef struct {
	LoopCore *lc;
	int kind;
	lua_Integer id;
	union {
		ev_io io;
		ev_timer timer;
		ev_signal sig;
		ev_watcher any;
	} w;
	ev_timer deadline; /* io watchers: armed by start(seconds) */
	/* io watchers driving a handshake (w:drive): the session, until the
	 * drive is over or it closes (then it clears this), and the events
	 * the watcher had before, given back when the drive ends (0: none) */
	void *drive;
	int drive_events;
} Watcher;

static void loopcore_unref(LoopCore *lc)
{
	if (--lc->refs > 0)
		return;
	ev_timer_stop(lc->loop, &lc->step_timer);
	if (lc->owned)
		ev_loop_destroy(lc->loop);
	free(lc->ready);
	free(lc);
}

static void mark_ready(LoopCore *lc, lua_Integer id)
{
	if (lc->nready == lc->cap) {
		size_t cap = lc->cap ? lc->cap * 2 : 64;
		lua_Integer *r = (lua_Integer *)realloc(lc->ready, cap * sizeof *r);
		if (r == NULL) {
			lc->overflow = 1;
			return;
		}
		lc->ready = r;
		lc->cap = cap;
	}
	lc->ready[lc->nready++] = id;
}

#define IO_EVENTS(w) ((w)->events & (EV_READ | EV_WRITE))

/* Points an io watcher at other events, keeping it armed if it was. */
static void io_retarget(struct ev_loop *loop, ev_io *w, int events)
{
	int active = ev_is_active(w);
	if (IO_EVENTS(w) == events)
		return;
	ev_io_stop(loop, w);
	ev_io_modify(w, events);
	if (active)
		ev_io_start(loop, w);
}

/* Ends a drive: the session is let go (if it has not ended the drive
 * itself) and the watcher waits for the events it had before, which is
 * what the Lua side knows of it. */
static void end_drive(Watcher *wa)
{
	if (wa->drive != NULL)
		luatls_session_undrive(wa->drive); /* clears wa->drive */
	wa->drive = NULL;
	if (wa->drive_events != 0)
		io_retarget(wa->lc->loop, &wa->w.io, wa->drive_events);
	wa->drive_events = 0;
}

/* io and timer watchers are one-shot: they stop when they fire, and Lua
 * starts them again when it waits again. A watcher driving a handshake
 * makes the next attempt itself (C only, no Lua: see w:drive) and fires
 * when the handshake is over. */
static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	Watcher *wa = (Watcher *)w->data;
	(void)revents;
	if (wa->drive != NULL) {
		int more = luatls_session_advance(wa->drive);
		if (more) {
			io_retarget(loop, w, more == 2 ? EV_WRITE : EV_READ);
			return;
		}
		end_drive(wa);
	}
	ev_io_stop(loop, w);
	ev_timer_stop(loop, &wa->deadline);
	mark_ready(wa->lc, wa->id);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Watcher *wa = (Watcher *)w->data;
	(void)revents;
	ev_io_stop(loop, &wa->w.io);
	end_drive(wa);
	mark_ready(wa->lc, -wa->id);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Watcher *wa = (Watcher *)w->data;
	(void)loop;
	(void)revents;
	mark_ready(wa->lc, wa->id);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	Watcher *wa = (Watcher *)w->data;
	(void)loop;
	(void)revents;
	mark_ready(wa->lc, wa->id);
}

static void step_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

/* A time argument (seconds, or a loop time): a number that is one; NaN
 * would make a timer fire at once or a wait never end. */
double luatls_check_time(lua_State *L, int i)
{
	double t = luaL_checknumber(L, i);
	if (t != t)
		luaL_argerror(L, i, "a time expected, got nan");
	return t;
}

static LoopCore *check_loop(lua_State *L, int i)
{
	Loop *lo = (Loop *)luatls_checkudata(L, i, LOOP_MT);
	if (lo->lc == NULL)
		luaL_error(L, "loop is closed");
	return lo->lc;
}

static Watcher *check_watcher(lua_State *L, int i)
{
	Watcher *wa = (Watcher *)luatls_checkudata(L, i, WATCHER_MT);
	if (wa->lc == NULL)
		luaL_error(L, "watcher is closed");
	return wa;
}

/* core.loop([{ new = true }]) -> Loop over the host's loop if one was handed
 * over, else libev's default loop, or a fresh loop of its own with new. */
static int loop_new(lua_State *L)
{
	static const char *const options[] = {"new", NULL};
	Loop *lo;
	int fresh = 0;
	if (!lua_isnoneornil(L, 1)) {
		luatls_checkoptions(L, 1, options);
		fresh = luatls_optfield_boolean(L, 1, "new", 0);
	}
	lo = (Loop *)luatls_newobject(L, sizeof *lo, LOOP_MT);
	lo->lc = (LoopCore *)calloc(1, sizeof *lo->lc);
	if (lo->lc == NULL)
		return luaL_error(L, "out of memory");
	lo->lc->refs = 1;
	if (fresh) {
		lo->lc->loop = ev_loop_new(EVFLAG_AUTO);
		lo->lc->owned = 1;
	} else {
		lo->lc->loop = luatls_host_loop(L);
		if (lo->lc->loop == NULL)
			lo->lc->loop = ev_default_loop(EVFLAG_AUTO);
	}
	if (lo->lc->loop == NULL) {
		free(lo->lc);
		lo->lc = NULL;
		return luaL_error(L, "cannot create an event loop");
	}
	ev_timer_init(&lo->lc->step_timer, step_cb, 0., 0.);
	return 1;
}

/* A new stopped watcher of the given kind and id, pushed: [-0, +1] */
static Watcher *push_watcher(lua_State *L, LoopCore *lc, int kind,
			     lua_Integer id)
{
	Watcher *wa = (Watcher *)luatls_newobject(L, sizeof *wa, WATCHER_MT);
	wa->kind = kind;
	wa->id = id;
	wa->lc = lc;
	lc->refs++;
	return wa;
}

/* The same with the id at arg 2 (the constructors' loop:KIND(id, ...)) */
static Watcher *new_watcher(lua_State *L, LoopCore *lc, int kind)
{
	lua_Integer id = luaL_checkinteger(L, 2);
	if (id <= 0)
		luaL_argerror(L, 2, "watcher ids are positive integers");
	return push_watcher(L, lc, kind, id);
}

static int io_events(lua_State *L, int i)
{
	static const char *const dirs[] = {"r", "w", "rw", NULL};
	static const int events[] = {EV_READ, EV_WRITE, EV_READ | EV_WRITE};
	return events[luaL_checkoption(L, i, NULL, dirs)];
}

static void init_io(Watcher *wa, int fd, int ev)
{
	ev_io_init(&wa->w.io, io_cb, fd, ev);
	wa->w.io.data = wa;
	ev_timer_init(&wa->deadline, deadline_cb, 0., 0.);
	wa->deadline.data = wa;
}

/* loop:io(id, fd, "r"|"w"|"rw") -> Watcher (stopped) */
static int loop_io(lua_State *L)
{
	LoopCore *lc = check_loop(L, 1);
	int fd = (int)luaL_checkinteger(L, 3), ev = io_events(L, 4);
	init_io(new_watcher(L, lc, W_IO), fd, ev);
	return 1;
}

/* For the acceptor (acceptor.c): the loop of the Loop at arg i, with a
 * reference the caller gives back with luatls_loop_unref; its libev loop;
 * marking an id ready for the next loop:step(); a new io watcher for
 * fd (stopped, reading), pushed: [-0, +1]. */
void *luatls_loop_ref(lua_State *L, int i)
{
	LoopCore *lc = check_loop(L, i);
	lc->refs++;
	return lc;
}

void luatls_loop_unref(void *lc)
{
	loopcore_unref((LoopCore *)lc);
}

struct ev_loop *luatls_loop_ev(void *lc)
{
	return ((LoopCore *)lc)->loop;
}

void luatls_loop_ready(void *lc, lua_Integer id)
{
	mark_ready((LoopCore *)lc, id);
}

void luatls_loop_push_io(lua_State *L, void *lc, lua_Integer id, int fd,
			 int known)
{
	Watcher *wa = push_watcher(L, (LoopCore *)lc, W_IO, id);
	init_io(wa, fd, EV_READ);
	/* ev_io_init marks the watcher's fd as possibly new, which makes
	 * libev register it with the backend again on start (with epoll, an
	 * EPOLL_CTL_ADD that fails with EEXIST, one per connection); libev
	 * has no public way to say the fd is the one it knows */
	if (known)
		wa->w.io.events &= ~EV__IOFDSET;
}

/* loop:timer(id) -> Watcher (stopped); start it with w:start(seconds) */
static int loop_timer(lua_State *L)
{
	LoopCore *lc = check_loop(L, 1);
	Watcher *wa = new_watcher(L, lc, W_TIMER);
	ev_timer_init(&wa->w.timer, timer_cb, 0., 0.);
	wa->w.timer.data = wa;
	return 1;
}

/* loop:signal(id, signum) -> Watcher (stopped) */
static int loop_signal(lua_State *L)
{
	LoopCore *lc = check_loop(L, 1);
	int sig = (int)luaL_checkinteger(L, 3);
	Watcher *wa = new_watcher(L, lc, W_SIGNAL);
	ev_signal_init(&wa->w.sig, signal_cb, sig);
	wa->w.sig.data = wa;
	return 1;
}

/* loop:step(timeout, ready [, at]) -> n, now: waits for events at most
 * timeout seconds (nil: until one arrives, 0: poll) and not past the loop
 * time at (absolute, as loop:now() gives; nil: no such bound), stores
 * the ids of the watchers that fired in ready[1..n] (-id for an io
 * watcher whose deadline passed), and returns their number and the
 * loop's time after the wait. */
static int loop_step(lua_State *L)
{
	LoopCore *lc = check_loop(L, 1);
	double timeout = lua_isnoneornil(L, 2) ? -1. : luatls_check_time(L, 2);
	size_t i, n;
	luaL_checktype(L, 3, LUA_TTABLE);
	if (!lua_isnoneornil(L, 4)) {
		double left;
		ev_now_update(lc->loop);
		left = luatls_check_time(L, 4) - ev_now(lc->loop);
		if (left < 0.)
			left = 0.;
		if (timeout < 0. || left < timeout)
			timeout = left;
	}
	lc->nready = 0;
	if (timeout > 0.) {
		ev_timer_set(&lc->step_timer, timeout, 0.);
		ev_timer_start(lc->loop, &lc->step_timer);
		ev_run(lc->loop, EVRUN_ONCE);
		ev_timer_stop(lc->loop, &lc->step_timer);
	} else {
		ev_run(lc->loop, timeout == 0. ? EVRUN_NOWAIT : EVRUN_ONCE);
	}
	n = lc->nready;
	for (i = 0; i < n; i++) {
		lua_pushinteger(L, lc->ready[i]);
		lua_rawseti(L, 3, (int)i + 1);
	}
	lc->nready = 0;
	if (lc->overflow) {
		lc->overflow = 0;
		return luaL_error(L, "out of memory recording ready watchers");
	}
	lua_pushinteger(L, (lua_Integer)n);
	lua_pushnumber(L, ev_now(lc->loop));
	return 2;
}

/* loop:now() -> the loop's idea of the current time, in seconds */
static int loop_now(lua_State *L)
{
	LoopCore *lc = check_loop(L, 1);
	ev_now_update(lc->loop);
	lua_pushnumber(L, ev_now(lc->loop));
	return 1;
}

static int loop_close(lua_State *L)
{
	Loop *lo = (Loop *)luatls_checkudata(L, 1, LOOP_MT);
	if (lo->lc != NULL) {
		loopcore_unref(lo->lc);
		lo->lc = NULL;
	}
	return 0;
}

static int loop_tostring(lua_State *L)
{
	Loop *lo = (Loop *)luatls_checkudata(L, 1, LOOP_MT);
	lua_pushfstring(L, "luatls.Loop (%s): %p",
			lo->lc == NULL ? "closed"
			: lo->lc->owned ? "own" : "shared",
			(void *)lo);
	return 1;
}

/* w:start([seconds]) arms the watcher; timers need the delay, io
 * watchers take an optional deadline (reported as -id) */
static int watcher_start(lua_State *L)
{
	Watcher *wa = check_watcher(L, 1);
	struct ev_loop *loop = wa->lc->loop;
	switch (wa->kind) {
	case W_IO:
		end_drive(wa);
		ev_io_start(loop, &wa->w.io);
		ev_timer_stop(loop, &wa->deadline);
		if (!lua_isnoneornil(L, 2)) {
			ev_timer_set(&wa->deadline, luatls_check_time(L, 2), 0.);
			ev_timer_start(loop, &wa->deadline);
		}
		break;
	case W_TIMER:
		ev_timer_stop(loop, &wa->w.timer);
		ev_timer_set(&wa->w.timer, luatls_check_time(L, 2), 0.);
		ev_timer_start(loop, &wa->w.timer);
		break;
	default:
		ev_signal_start(loop, &wa->w.sig);
		break;
	}
	return 0;
}

/* w:start_by(deadline) arms an io watcher with an absolute deadline in
 * loop time (loop:now()): libev counts a timer from the loop time of this
 * iteration, so the timer is set from that, not from a fresh clock, and
 * fires at the deadline itself. One call where start(seconds) would need
 * the time read first. */
static int watcher_start_by(lua_State *L)
{
	Watcher *wa = check_watcher(L, 1);
	struct ev_loop *loop = wa->lc->loop;
	double left = luatls_check_time(L, 2) - ev_now(loop);
	if (wa->kind != W_IO)
		return luaL_error(L, "start_by: not an io watcher");
	end_drive(wa);
	ev_io_start(loop, &wa->w.io);
	ev_timer_stop(loop, &wa->deadline);
	ev_timer_set(&wa->deadline, left > 0. ? left : 0., 0.);
	ev_timer_start(loop, &wa->deadline);
	return 0;
}

static void watcher_stop_(Watcher *wa)
{
	struct ev_loop *loop = wa->lc->loop;
	switch (wa->kind) {
	case W_IO:
		ev_io_stop(loop, &wa->w.io);
		ev_timer_stop(loop, &wa->deadline);
		end_drive(wa);
		break;
	case W_TIMER:
		ev_timer_stop(loop, &wa->w.timer);
		break;
	default:
		ev_signal_stop(loop, &wa->w.sig);
		break;
	}
}

/* w:stop() disarms the watcher */
static int watcher_stop(lua_State *L)
{
	watcher_stop_(check_watcher(L, 1));
	return 0;
}

/* w:set(fd, "r"|"w"|"rw") changes what an io watcher waits for; fd nil
 * keeps the descriptor */
static int watcher_set(lua_State *L)
{
	Watcher *wa = check_watcher(L, 1);
	int same = lua_isnil(L, 2);
	int fd = same ? wa->w.io.fd : (int)luaL_checkinteger(L, 2);
	int ev = io_events(L, 3);
	if (wa->kind != W_IO)
		return luaL_error(L, "set: not an io watcher");
	watcher_stop_(wa);
	/* a descriptor given may be a number used again: libev then makes
	 * its registration anew; the same one keeps it */
	if (same)
		ev_io_modify(&wa->w.io, ev);
	else
		ev_io_set(&wa->w.io, fd, ev);
	return 0;
}

/* w:drive(sess, seconds [, dir]) -> true | false | nil: the io watcher
 * drives the server handshake of sess on its own, retrying it inside
 * ev_run whenever the socket is ready, and fires (its id) once the
 * handshake is over, or (-id) when seconds pass first; sess:handshake()
 * then reports how it ended. Without dir it makes the first attempt at
 * once; with dir ("r" or "w", what the caller's last attempt asked for) it
 * waits for that first. true: over at the first attempt, nothing armed;
 * false: armed; nil: sess cannot be driven without Lua (a hook, early
 * data, a session store before a TLS 1.3 ClientHello), so the caller
 * makes the attempts itself. Stopping the watcher ends the drive; it then
 * waits for the events it had before. */
static int watcher_drive(lua_State *L)
{
	static const char *const dirs[] = {"r", "w", NULL};
	Watcher *wa = check_watcher(L, 1);
	void *ss = luatls_session_driveable(L, 2);
	double seconds = luatls_check_time(L, 3);
	int wait = lua_isnoneornil(L, 4) ? 0 : luaL_checkoption(L, 4, NULL, dirs) + 1;
	int more;
	if (wa->kind != W_IO)
		return luaL_error(L, "drive: not an io watcher");
	if (ss == NULL) {
		lua_pushnil(L);
		return 1;
	}
	watcher_stop_(wa);
	wa->drive_events = IO_EVENTS(&wa->w.io);
	more = luatls_session_drive(ss, &wa->drive, wait == 0);
	if (wait)
		more = wait;
	if (!more) {
		end_drive(wa);
		lua_pushboolean(L, 1);
		return 1;
	}
	io_retarget(wa->lc->loop, &wa->w.io, more == 2 ? EV_WRITE : EV_READ);
	ev_io_start(wa->lc->loop, &wa->w.io);
	ev_timer_set(&wa->deadline, seconds > 0. ? seconds : 0., 0.);
	ev_timer_start(wa->lc->loop, &wa->deadline);
	lua_pushboolean(L, 0);
	return 1;
}

/* w:active() -> whether the watcher is armed */
static int watcher_active(lua_State *L)
{
	Watcher *wa = check_watcher(L, 1);
	lua_pushboolean(L, ev_is_active(&wa->w.any));
	return 1;
}

static int watcher_close(lua_State *L)
{
	Watcher *wa = (Watcher *)luatls_checkudata(L, 1, WATCHER_MT);
	if (wa->lc != NULL) {
		watcher_stop_(wa);
		loopcore_unref(wa->lc);
		wa->lc = NULL;
	}
	return 0;
}

static int watcher_tostring(lua_State *L)
{
	static const char *const kinds[] = {"io", "timer", "signal"};
	Watcher *wa = (Watcher *)luatls_checkudata(L, 1, WATCHER_MT);
	lua_pushfstring(L, "luatls.Watcher (%s %d%s): %p", kinds[wa->kind],
			(int)wa->id, wa->lc == NULL ? ", closed" : "",
			(void *)wa);
	return 1;
}

static const luaL_Reg loop_methods[] = {
	{"close", loop_close},
	{"io", loop_io},
	{"now", loop_now},
	{"signal", loop_signal},
	{"step", loop_step},
	{"timer", loop_timer},
	{NULL, NULL}
};

static const luaL_Reg loop_meta[] = {
	{"__close", loop_close},
	{"__gc", loop_close},
	{"__tostring", loop_tostring},
	{NULL, NULL}
};

static const luaL_Reg watcher_methods[] = {
	{"active", watcher_active},
	{"close", watcher_close},
	{"drive", watcher_drive},
	{"set", watcher_set},
	{"start", watcher_start},
	{"start_by", watcher_start_by},
	{"stop", watcher_stop},
	{NULL, NULL}
};

static const luaL_Reg watcher_meta[] = {
	{"__close", watcher_close},
	{"__gc", watcher_close},
	{"__tostring", watcher_tostring},
	{NULL, NULL}
};

void luatls_open_loop(lua_State *L)
{
	luatls_newclass(L, LOOP_MT, loop_methods, loop_meta);
	luatls_newclass(L, WATCHER_MT, watcher_methods, watcher_meta);
	lua_pushcfunction(L, loop_new);
	lua_setfield(L, -2, "loop");
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, SIGINT);
	lua_setfield(L, -2, "SIGINT");
	lua_pushinteger(L, SIGTERM);
	lua_setfield(L, -2, "SIGTERM");
	lua_pushinteger(L, SIGHUP);
	lua_setfield(L, -2, "SIGHUP");
	lua_pushinteger(L, SIGPIPE);
	lua_setfield(L, -2, "SIGPIPE");
	lua_setfield(L, -2, "signals");
}
