// A Worker with concurrency C (argv[2]) over N jobs (argv[3]) added with addBulk.
// The first jobs wait until C of them run at once (or 3 s pass), so `maxInFlight`
// shows whether the server hands a worker C jobs at the same time; every processed
// id is reported so the test can check each job ran exactly once.
import { Queue, Worker, connection, deferred, queueName, run, within } from "./harness.ts";

const C = Number(process.argv[2]);
const N = Number(process.argv[3]);

run(async (out) => {
  const queue = new Queue<{ n: number }>(queueName, { connection: connection() });
  const added = await queue.addBulk(
    Array.from({ length: N }, (_, n) => ({ name: "square", data: { n } })),
  );
  out.addedIds = added.map((job) => job.id);

  const processed: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  let completed = 0;
  let wrongResults = 0;
  const full = deferred();
  const done = deferred();
  out.processed = processed;
  const worker = new Worker<{ n: number }, number>(
    queueName,
    async (job) => {
      processed.push(job.id);
      out.maxInFlight = maxInFlight = Math.max(maxInFlight, ++inFlight);
      if (inFlight >= C) full.resolve();
      await within(full.promise, 3_000, undefined);
      full.resolve(); // a server that cannot reach C must not stall every job
      inFlight--;
      return job.data.n * job.data.n;
    },
    { connection: connection(), concurrency: C },
  );
  worker.on("completed", (job, result) => {
    if (result !== job.data.n * job.data.n) wrongResults++;
    if (++completed === N) done.resolve();
  });
  await done.promise;
  await worker.close();
  out.wrongResults = wrongResults;
  out.counts = await queue.getJobCountsAsync();
  await queue.close();
});
