# luatls: build the C core (luatls/core.so) and run the specs.
#
#   make                      build for $(LUA) into build/$(LUA)/, copy to ./luatls/core.so
#   make LUA=lua5.1           ... for another interpreter (lua5.1, lua5.4, luajit; lua5.3
#                             too, given liblua5.3-dev)
#   make test                 build and run the specs under each of $(LUAS)
#   make test LUAS=lua5.4 BUSTED_ARGS=spec/x509_spec.lua   (BUSTED_TIMEOUT=900 s per run)
#   make check-memory         the specs under lua5.4 with AddressSanitizer + UBSan
#   make demo                 examples/demo.sh: a server and a client over loopback
#   make deps                 install the Debian packages below (as root)
#   make rock-test            `luarocks make` into a temporary tree, then require it
#   make bench | clean
#
# Variables use LuaRocks' names (LUA, LUA_INCDIR, CC, CFLAGS, LIBFLAG, LDFLAGS).

LUA        ?= lua5.4
LUAS       ?= lua5.4 lua5.1 luajit
LUA_NAME    = $(notdir $(LUA))
LUA_INCDIR ?= $(if $(filter luajit%,$(LUA_NAME)),/usr/include/luajit-2.1,/usr/include/$(LUA_NAME))

CFLAGS     ?= -O2 -g
WERROR     ?= -Werror
WARNINGS    = -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
              -Wpointer-arith -Wcast-qual -Wformat=2 $(WERROR)
LIBFLAG    ?= -shared
LDFLAGS    ?=

# GnuTLS from pkg-config; Debian's libev has no .pc file, so plain paths.
GNUTLS_CFLAGS ?= $(shell pkg-config --cflags gnutls)
GNUTLS_LIBS   ?= $(shell pkg-config --libs gnutls)
LIBEV_INCDIR  ?=
LIBEV_LIBDIR  ?=

ALL_CFLAGS  = -std=c99 -fPIC -fvisibility=hidden $(WARNINGS) -D_POSIX_C_SOURCE=200809L \
              -Iinclude -Isrc -I$(LUA_INCDIR) $(if $(LIBEV_INCDIR),-I$(LIBEV_INCDIR)) \
              $(GNUTLS_CFLAGS) $(CFLAGS)
LIBS        = $(GNUTLS_LIBS) $(if $(LIBEV_LIBDIR),-L$(LIBEV_LIBDIR)) -lev

BUILD      ?= build/$(LUA_NAME)
SRCS        = $(wildcard src/*.c)
HDRS        = $(wildcard src/*.h include/*.h)
OBJS        = $(SRCS:src/%.c=$(BUILD)/%.o)
MODULE      = $(BUILD)/luatls/core.so
TAPDIR      = build/tap

DEB_PACKAGES = gcc make pkg-config libgnutls28-dev libev-dev \
               lua5.1 lua5.4 luajit liblua5.1-0-dev liblua5.4-dev libluajit-5.1-dev \
               lua-busted luarocks gnutls-bin openssl curl lua-cjson lua-socket lua-sec \
               valgrind procps util-linux

.PHONY: all module deps test demo check-memory bench rock-test clean

all: deps
	@$(MAKE) --no-print-directory module
	@mkdir -p luatls && cp -f $(MODULE) luatls/core.so

# Only the module for $(LUA), no package check: what `test` builds per interpreter.
module: $(MODULE)

$(MODULE): $(OBJS)
	$(if $(OBJS),,$(error no C sources in src/))
	@mkdir -p $(@D)
	$(CC) $(LIBFLAG) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)
	@nm -D --defined-only $@ | grep -q ' luaopen_luatls_core$$' || \
		{ echo "$@: luaopen_luatls_core is not exported" >&2; rm -f $@; exit 1; }

$(BUILD)/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# A quick no-op when everything is installed.
deps:
	@missing=; \
	for p in $(DEB_PACKAGES); do \
		[ "$$(dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null)" = installed ] || \
			missing="$$missing $$p"; \
	done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "missing Debian packages:$$missing" >&2; \
		echo "install them with: sudo apt-get install$$missing" >&2; \
		exit 1; \
	fi; \
	echo "installing:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -q && apt-get install -y -q$$missing

# Each interpreter gets its own core.so (build/<lua>/luatls/core.so); see
# .ci/busted-tap.sh for LUA_PATH/LUA_CPATH. The last line is "N passed, N failed".
# Each run counts in a folder of its own, so that runs at the same time do
# not mix their results; the last summary is also left in $(TAPDIR)/summary.
test: deps
	@mkdir -p $(TAPDIR); run=$$(mktemp -d $(TAPDIR)/run.XXXXXX); \
	for lua in $(LUAS); do \
		if $(MAKE) --no-print-directory LUA=$$lua BUILD=build/$$lua module; then \
			.ci/busted-tap.sh $$lua build/$$lua $$run/$$lua.tap $(BUSTED_ARGS); \
		else \
			echo "not ok - $$lua: build failed" | tee $$run/$$lua.tap; \
		fi; \
	done; \
	.ci/tap-summary.sh $$run/*.tap >$$run/summary; status=$$?; \
	cp $$run/summary $(TAPDIR)/summary; cat $$run/summary; rm -rf $$run; \
	exit $$status

# lua5.4 with AddressSanitizer and UBSan (.ci/asan-lua); leaks outside our code
# are listed in .ci/lsan.supp.
ASAN_BUILD = build/asan-lua5.4
SANITIZE   = -fsanitize=address,undefined -fno-omit-frame-pointer

check-memory: deps
	@$(MAKE) --no-print-directory LUA=lua5.4 BUILD=$(ASAN_BUILD) \
		CFLAGS="-O1 -g $(SANITIZE)" LDFLAGS="$(SANITIZE)" module $(ASAN_BUILD)/preload.so
	@rm -rf $(TAPDIR)-asan && mkdir -p $(TAPDIR)-asan; \
	.ci/busted-tap.sh .ci/asan-lua $(ASAN_BUILD) $(TAPDIR)-asan/lua5.4.tap $(BUSTED_ARGS); \
	.ci/tap-summary.sh $(TAPDIR)-asan/lua5.4.tap >$(TAPDIR)-asan/summary; status=$$?; \
	cat $(TAPDIR)-asan/summary; exit $$status

$(ASAN_BUILD)/preload.so: .ci/asan-preload.c
	@mkdir -p $(@D)
	$(CC) -shared -fPIC -o $@ $<

demo: all
	LUA=$(LUA) examples/demo.sh

bench:
	@if [ -f bench/Makefile ]; then $(MAKE) -C bench; else echo "no bench/ yet"; fi

# `luarocks make` from this checkout into a throwaway tree, then load it from
# there. luarocks builds in place: it leaves src/*.o (removed here) and its own
# luatls/core.so.
rock-test: deps
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp" src/*.o' EXIT; \
	luarocks --lua-version=5.4 --tree "$$tmp" make luatls-scm-1.rockspec && \
	lua5.4 -e "package.path = '$$tmp/share/lua/5.4/?.lua;$$tmp/share/lua/5.4/?/init.lua' \
		package.cpath = '$$tmp/lib/lua/5.4/?.so' \
		require 'luatls' require 'luatls.core' \
		print('rock-test: loaded ' .. package.searchpath('luatls.core', package.cpath))"

clean:
	rm -rf build luatls src/*.o
