// `Queue.upsertJobScheduler`/`getJobSchedulers`/`removeJobScheduler` with a Worker
// taking the jobs a scheduler makes, then `setGlobalConcurrency` holding a Worker of
// concurrency 8 to 2 jobs at a time. Reports what was listed, what ran, and the most
// jobs seen running at once.
import { Queue, Worker, connection, deferred, queueName, run } from "./harness.ts";

const EVERY_MS = 200;
const JOBS = 12;
const LIMIT = 2;

run(async (out) => {
  const queue = new Queue(queueName, { connection: connection() });

  // A scheduler firing every 200 ms; a worker takes what it makes.
  await queue.upsertJobScheduler("tick", { every: EVERY_MS }, { name: "tick", data: { n: 1 } });
  out.listed = (await queue.getJobSchedulers()).map((s) => s.name ?? s.id);
  const ticks = deferred();
  let ticked = 0;
  const tickWorker = new Worker(
    queueName,
    async (job) => {
      if (job.name === "tick") ticked += 1;
      if (ticked === 2) ticks.resolve();
      return null;
    },
    { connection: connection(), concurrency: 1 },
  );
  await ticks.promise;
  out.removed = await queue.removeJobScheduler("tick");
  await tickWorker.close();
  out.ticked = ticked;
  out.listedAfterRemove = (await queue.getJobSchedulers()).length;
  await queue.obliterateAsync();

  // A global concurrency of 2 against a worker that would run 8 at once.
  await queue.setGlobalConcurrencyAsync(LIMIT);
  let running = 0;
  let most = 0;
  const done = deferred();
  let finished = 0;
  const worker = new Worker(
    queueName,
    async () => {
      running += 1;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 50));
      running -= 1;
      finished += 1;
      if (finished === JOBS) done.resolve();
      return null;
    },
    { connection: connection(), concurrency: 8 },
  );
  await queue.addBulk(Array.from({ length: JOBS }, (_, i) => ({ name: "limited", data: { i } })));
  await done.promise;
  await worker.close();
  out.finished = finished;
  out.mostAtOnce = most;
  await queue.close();
});
