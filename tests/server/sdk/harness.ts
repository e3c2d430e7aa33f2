// Shared by the SDK contract scripts run from tests/server/test_tcp_sdk.py.
//
// Each script drives a server with the stock bunqueue SDK (its `bunqueue/client`
// entry point) and prints one line `RESULT <json>` to stdout. The package is imported
// by a path relative to this file, because Bun resolves bare names only from a
// node_modules above the importing file (it ignores NODE_PATH) and would otherwise
// try to auto-install; the tests also run bun with --no-install.
//
// Environment: BQ_HOST, BQ_PORT (the server's bunqueue TCP port), BQ_QUEUE (a queue
// name no other test uses) and, for auth, BQ_TEST_TOKEN. The token is deliberately
// not passed as BQ_TOKEN: the SDK reads that variable itself whenever
// connection.token is unset, which would hide what the script asked for.

export {
  FlowProducer,
  Queue,
  QueueEvents,
  UnrecoverableError,
  Worker,
} from "../../../bench/peers/node_modules/bunqueue/dist/client/index.js";

export const queueName = required("BQ_QUEUE");
export const token = process.env.BQ_TEST_TOKEN || undefined;

/** The SDK's `connection` option for the server under test, authenticating with
 * `auth` (default: BQ_TEST_TOKEN); null sends no token at all. */
export function connection(auth: string | null = token ?? null) {
  const base = { host: required("BQ_HOST"), port: Number(required("BQ_PORT")) };
  return auth === null ? base : { ...base, token: auth };
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

export type Result = Record<string, unknown>;

/**
 * Runs `main`, prints `RESULT <json>` of the object it fills, and exits. The scenario
 * fills `out` as it goes, so a run that hangs still reports how far it got: after
 * `limitMs` it is printed with `timedOut: true` and the process exits with status 2
 * (an exception adds `error` and exits with 1). Exiting outright also drops any SDK
 * socket or timer still open.
 */
export function run(main: (out: Result) => Promise<void>, limitMs = 15_000) {
  const out: Result = {};
  const finish = (code: number, extra: Result) => {
    console.log("RESULT " + JSON.stringify({ ...out, ...extra }));
    process.exit(code);
  };
  setTimeout(() => finish(2, { timedOut: true }), limitMs);
  main(out).then(
    () => finish(0, {}),
    (e: unknown) => finish(1, { error: e instanceof Error ? e.stack ?? e.message : String(e) }),
  );
}

/** A promise settled from outside, e.g. by an event handler once a count is reached. */
export function deferred<T = void>() {
  let resolve!: (value: T | PromiseLike<T>) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Resolves with `promise`, or with `fallback` after `ms`: for outcomes that may never come. */
export function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<F>((r) => (timer = setTimeout(() => r(fallback), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
