// A job added twice with the same custom jobId: through add() (PUSHB, where the id
// travels as `customId`), through add() with autoBatch off (PUSH, as `jobId`) and in
// one addBulk. Each second add must return the first job's id and not make a job.
// The ids are `<queue>-1` … `<queue>-3`, unique to the test.
import { Queue, connection, queueName, run } from "./harness.ts";

run(async (out) => {
  const queue = new Queue(queueName, { connection: connection() });
  const unbatched = new Queue(queueName, {
    connection: connection(),
    autoBatch: { enabled: false },
  });
  const twice = async (q: Queue, jobId: string) => [
    (await q.add("custom", { v: 1 }, { jobId })).id,
    (await q.add("custom", { v: 2 }, { jobId })).id,
  ];
  out.batched = await twice(queue, `${queueName}-1`);
  out.unbatched = await twice(unbatched, `${queueName}-2`);
  out.bulk = (
    await queue.addBulk([
      { name: "custom", data: { v: 1 }, opts: { jobId: `${queueName}-3` } },
      { name: "custom", data: { v: 2 }, opts: { jobId: `${queueName}-3` } },
    ])
  ).map((job) => job.id);
  const kept = await queue.getJob(`${queueName}-1`);
  out.keptData = kept ? kept.data : null;
  out.counts = await queue.getJobCountsAsync();
  await Promise.all([queue.close(), unbatched.close()]);
});
