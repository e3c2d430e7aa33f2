// Token auth (server started with AUTH_TOKENS containing BQ_TEST_TOKEN). With the
// right connection.token, add → Worker → QueueEvents works end to end. With a wrong
// token, or none, add() must not succeed: the SDK's Auth fails, it reconnects and
// retries, so the call either rejects or is still pending after WAIT_MS.
import {
  Queue,
  QueueEvents,
  Worker,
  connection,
  deferred,
  queueName,
  run,
  token,
  within,
} from "./harness.ts";

const WAIT_MS = 2_000;

async function tryAdd(auth: string | null): Promise<string> {
  const queue = new Queue(queueName, { connection: connection(auth) });
  const outcome = await within(
    queue.add("intruder", { n: 0 }).then(
      (job) => `added ${job.id}`,
      (e: unknown) => `rejected: ${e instanceof Error ? e.message : String(e)}`,
    ),
    WAIT_MS,
    "pending",
  );
  void queue.close();
  return outcome;
}

run(async (out) => {
  if (!token) throw new Error("BQ_TEST_TOKEN is not set");
  [out.wrongToken, out.noToken] = await Promise.all([tryAdd(`${token}-wrong`), tryAdd(null)]);

  const queue = new Queue(queueName, { connection: connection() });
  const events = new QueueEvents(queueName, { connection: connection() });
  await events.waitUntilReady();
  const completed = deferred<unknown>();
  events.on("completed", (e) => completed.resolve(e.returnvalue));
  const job = await queue.add("member", { n: 6 });
  const worker = new Worker(queueName, async (j) => j.data.n * 7, {
    connection: connection(),
    concurrency: 2,
  });
  out.returnvalue = await completed.promise;
  await worker.close();
  out.state = await queue.getJobState(job.id);
  out.counts = await queue.getJobCountsAsync();
  await Promise.all([events.close(), queue.close()]);
});
