/* Preloaded after libasan into the check-memory interpreter (.ci/asan-lua).
   - Drops LD_PRELOAD from the environment before main, so that the programs
     the specs start (sh, certtool, openssl, curl) run without AddressSanitizer:
     preloaded into them, it can hang them.
   - Makes dlclose a no-op, so that C modules Lua unloads at exit are still
     mapped when LeakSanitizer symbolizes its stack traces. */
#include <stdlib.h>

int dlclose(void *handle);

__attribute__((constructor)) static void drop_preload(void)
{
	unsetenv("LD_PRELOAD");
}

int dlclose(void *handle)
{
	(void)handle;
	return 0;
}
