// QueueEvents over TCP following two jobs: "ok" reports progress and completes, "bad"
// (attempts:1) throws and fails for good. Reports every event in arrival order, and
// each job's final state as the Queue reads it back.
import { Queue, QueueEvents, Worker, connection, deferred, queueName, run } from "./harness.ts";

run(async (out) => {
  const queue = new Queue(queueName, { connection: connection() });
  const events = new QueueEvents(queueName, { connection: connection() });
  await events.waitUntilReady();
  const seen: [string, string, unknown][] = [];
  out.events = seen;
  const completed = deferred();
  const failed = deferred();
  events.on("waiting", (e) => seen.push(["waiting", e.jobId, null]));
  events.on("active", (e) => seen.push(["active", e.jobId, null]));
  events.on("progress", (e) => seen.push(["progress", e.jobId, e.data]));
  events.on("completed", (e) => {
    seen.push(["completed", e.jobId, e.returnvalue]);
    completed.resolve();
  });
  events.on("failed", (e) => {
    seen.push(["failed", e.jobId, e.failedReason]);
    failed.resolve();
  });

  const ok = await queue.add("ok", { n: 1 });
  const bad = await queue.add("bad", { n: 2 }, { attempts: 1 });
  out.okId = ok.id;
  out.badId = bad.id;
  const worker = new Worker(
    queueName,
    async (job) => {
      if (job.name === "bad") throw new Error("boom: bad input");
      await job.updateProgress(42);
      return { done: true, n: job.data.n };
    },
    { connection: connection(), concurrency: 1 },
  );
  await Promise.all([completed.promise, failed.promise]);
  await worker.close();
  const badJob = await queue.getJob(bad.id);
  out.states = { ok: await queue.getJobState(ok.id), bad: await queue.getJobState(bad.id) };
  out.badJob = badJob && { failedReason: badJob.failedReason, attemptsMade: badJob.attemptsMade };
  await Promise.all([events.close(), queue.close()]);
});
