// Records SIGTERM/SIGINT from the runner's first moment: a pod can be deleted
// (or hit its deadline) while the handlers and their libraries still load,
// and an unhandled SIGTERM would kill the runner without a result. No
// imports, so it is evaluated before anything heavy is even parsed.
type StopListener = (signal: string) => void;

let received: string | undefined;
const listeners: StopListener[] = [];

function onSignal(signal: string): void {
  if (received) return;
  received = signal;
  for (const listener of listeners) listener(signal);
}
process.on("SIGTERM", () => onSignal("SIGTERM"));
process.on("SIGINT", () => onSignal("SIGINT"));

/** Calls `listener` once on the first stop signal, at once if one already came. */
export function onStop(listener: StopListener): void {
  if (received) listener(received);
  else listeners.push(listener);
}
