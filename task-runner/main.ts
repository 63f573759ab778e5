// The Nightshift task runner's entry point (see cli.ts for usage). It only
// installs the stop-signal handlers, then loads the CLI: a static import would
// parse every handler and library before any of this module's code ran.
import "./stop-signal.ts";

await import("./cli.ts");
