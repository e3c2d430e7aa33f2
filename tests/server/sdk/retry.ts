// attempts:3 with a fixed backoff: the processor throws on its first two calls and
// succeeds on the third. Reports what the processor saw on each call (attemptsMade,
// time), the QueueEvents 'failed' reasons and the job's final state.
import { Queue, QueueEvents, Worker, connection, deferred, queueName, run } from "./harness.ts";

const BACKOFF_MS = 300;

run(async (out) => {
  const queue = new Queue(queueName, { connection: connection() });
  const events = new QueueEvents(queueName, { connection: connection() });
  await events.waitUntilReady();
  const failedReasons: string[] = [];
  const completed = deferred<unknown>();
  events.on("failed", (e) => failedReasons.push(e.failedReason));
  events.on("completed", (e) => completed.resolve(e.returnvalue));
  out.failedReasons = failedReasons;

  const job = await queue.add(
    "flaky",
    { n: 7 },
    { attempts: 3, backoff: { type: "fixed", delay: BACKOFF_MS } },
  );
  out.backoffMs = BACKOFF_MS;
  const calls: { attemptsMade: number; at: number }[] = [];
  out.calls = calls;
  const worker = new Worker(
    queueName,
    async (j) => {
      calls.push({ attemptsMade: j.attemptsMade, at: Date.now() });
      if (calls.length < 3) throw new Error(`flaky call ${calls.length}`);
      return { n: j.data.n, calls: calls.length };
    },
    { connection: connection(), concurrency: 1 },
  );
  out.returnvalue = await completed.promise;
  await worker.close();
  const final = await queue.getJob(job.id);
  out.state = await queue.getJobState(job.id);
  out.attemptsMade = final ? final.attemptsMade : null;
  out.storedReturnvalue = final ? final.returnvalue : null;
  await Promise.all([events.close(), queue.close()]);
});
