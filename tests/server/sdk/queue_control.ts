// The SDK's tier-2 Queue and Job methods over TCP: listing jobs by state, counts,
// pause/resume, changing a job's priority, delay and data, promoting, a processor that
// moves its job to delayed, waitUntilFinished, job logs, the DLQ and retry, clean,
// global concurrency, drain. Reports what each call returned.
import {
  Queue,
  QueueEvents,
  UnrecoverableError,
  Worker,
  connection,
  deferred,
  queueName,
  run,
} from "./harness.ts";

run(async (out) => {
  const queue = new Queue(queueName, { connection: connection() });
  const a = await queue.add("a", { n: 1 }, { durable: true });
  const b = await queue.add("b", { n: 2 }, { durable: true });
  const later = await queue.add("later", { n: 3 }, { delay: 60_000, durable: true });

  out.waiting = (await queue.getWaitingAsync()).map((j) => j.id);
  out.delayed = (await queue.getDelayedAsync()).map((j) => j.id);
  out.count = await queue.countAsync();
  out.perPriority = await queue.getCountsPerPriorityAsync();

  await queue.pauseAsync();
  out.pausedWhilePaused = await queue.isPausedAsync();
  out.countsPaused = await queue.getJobCountsAsync();
  await queue.resumeAsync();
  out.pausedAfterResume = await queue.isPausedAsync();

  await queue.changeJobPriority(b.id, { priority: 9 });
  out.bState = await queue.getJobState(b.id);
  await queue.updateJobData(a.id, { n: 10 });
  await queue.promoteJob(later.id);
  out.laterState = await queue.getJobState(later.id);
  await queue.changeJobDelay(a.id, 60_000);
  out.aDelayedState = await queue.getJobState(a.id);
  await queue.promoteJob(a.id);
  await queue.addJobLog(a.id, "first line");
  await queue.addJobLog(a.id, "second line");
  out.logs = await queue.getJobLogs(a.id);

  // A processor that puts off its first call, then finishes; `b` fails for good.
  const events = new QueueEvents(queueName, { connection: connection() });
  await events.waitUntilReady();
  const calls: Record<string, number> = {};
  const allDone = deferred();
  let finished = 0;
  const countDone = () => {
    finished += 1;
    if (finished === 3) allDone.resolve();
  };
  events.on("completed", countDone);
  events.on("failed", (e) => {
    if (e.jobId === b.id) countDone();
  });
  const worker = new Worker(
    queueName,
    async (job, token) => {
      calls[job.name] = (calls[job.name] ?? 0) + 1;
      if (job.name === "b") throw new UnrecoverableError("b always fails");
      if (job.name === "a" && calls.a === 1) {
        await job.moveToDelayed(Date.now() + 300, token);
        return undefined;
      }
      return { doubled: (job.data as { n: number }).n * 2 };
    },
    { connection: connection(), concurrency: 2 },
  );
  const aJob = await queue.getJob(a.id);
  out.waited = await aJob!.waitUntilFinished(events, 10_000);
  await allDone.promise;
  await worker.close();
  out.calls = calls;
  out.completed = (await queue.getCompletedAsync()).map((j) => j.id).sort();
  out.failed = (await queue.getFailedAsync()).map((j) => j.id);
  out.dlq = (await queue.getDlqAsync()).map((e) => e.job.id);
  out.retried = await queue.retryDlqAsync(b.id);
  out.bAfterRetry = await queue.getJobState(b.id);
  out.cleaned = (await queue.cleanAsync(0, 100, "completed")).length;
  out.completedAfterClean = (await queue.getCompletedAsync()).length;

  await queue.setGlobalConcurrencyAsync(1);
  out.concurrency = await queue.getGlobalConcurrency();
  out.drained = await queue.drainAsync();
  out.countAfterDrain = await queue.countAsync();
  await Promise.all([events.close(), queue.close()]);
});
