// worker.close() while the worker holds jobs it has pulled but not started: the SDK
// hands them back with MoveToWait. Of N (argv[2]) jobs, a first worker closes itself
// from its first job; a second worker then takes the rest. Reports who processed
// what, the counts in between, and how often each job went active (a job handed back
// is pulled twice but processed once).
import { Queue, QueueEvents, Worker, connection, deferred, queueName, run } from "./harness.ts";

const N = Number(process.argv[2]);
const CONCURRENCY = 8;

run(async (out) => {
  const queue = new Queue<{ n: number }>(queueName, { connection: connection() });
  const events = new QueueEvents(queueName, { connection: connection() });
  await events.waitUntilReady();
  const activeIds: string[] = [];
  const completedIds: string[] = [];
  const allCompleted = deferred();
  events.on("active", (e) => activeIds.push(e.jobId));
  events.on("completed", (e) => {
    if (completedIds.push(e.jobId) === N) allCompleted.resolve();
  });

  const added = await queue.addBulk(
    Array.from({ length: N }, (_, n) => ({ name: "job", data: { n } })),
  );
  out.addedIds = added.map((job) => job.id);

  const byFirst: string[] = [];
  const closed = deferred();
  const first: Worker = new Worker(
    queueName,
    async (job) => {
      byFirst.push(job.id);
      closed.resolve(first.close()); // not awaited here: close() waits for this job to end
      return job.data.n;
    },
    { connection: connection(), concurrency: CONCURRENCY },
  );
  await closed.promise;
  out.byFirst = byFirst;
  out.countsAfterClose = await queue.getJobCountsAsync();

  const bySecond: string[] = [];
  const attemptsSeenBySecond: number[] = [];
  const second = new Worker(
    queueName,
    async (job) => {
      bySecond.push(job.id);
      attemptsSeenBySecond.push(job.attemptsMade);
      return job.data.n;
    },
    { connection: connection(), concurrency: CONCURRENCY },
  );
  out.bySecond = bySecond;
  out.attemptsSeenBySecond = attemptsSeenBySecond;
  await allCompleted.promise;
  await second.close();
  out.activeIds = activeIds;
  out.completedIds = completedIds;
  out.countsAtEnd = await queue.getJobCountsAsync();
  await Promise.all([events.close(), queue.close()]);
});
