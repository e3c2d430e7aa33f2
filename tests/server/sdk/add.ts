// Queue.add (auto-batched into PUSHB, and one plain PUSH with autoBatch off) and
// Queue.addBulk (one PUSHB) of BULK (argv[2]) jobs, CONCURRENT (argv[3]) add() calls at
// once; then reads jobs back and counts them.
import { Queue, connection, queueName, run } from "./harness.ts";

const BULK = Number(process.argv[2]);
const CONCURRENT = Number(process.argv[3]);

run(async (out) => {
  const queue = new Queue(queueName, { connection: connection() });
  const unbatched = new Queue(queueName, {
    connection: connection(),
    autoBatch: { enabled: false },
  });

  const single = await queue.add("single", { n: 0, text: "héllo" });
  out.singleId = single.id;
  const bulk = await queue.addBulk(
    Array.from({ length: BULK }, (_, i) => ({ name: "bulk", data: { n: i + 1 } })),
  );
  out.bulkIds = bulk.map((job) => job.id);
  // Concurrent add() calls are gathered into multi-job PUSHB frames by the SDK.
  const concurrent = await Promise.all(
    Array.from({ length: CONCURRENT }, (_, i) => queue.add("concurrent", { n: 1000 + i })),
  );
  out.concurrentIds = concurrent.map((job) => job.id);
  out.pushId = (await unbatched.add("push", { n: -1 }, { priority: 5 })).id;

  const fetched = await queue.getJob(single.id);
  out.fetched = fetched && { id: fetched.id, name: fetched.name, data: fetched.data };
  const lastBulk = await queue.getJob(bulk[BULK - 1].id);
  out.lastBulk = lastBulk && { name: lastBulk.name, data: lastBulk.data };
  out.counts = await queue.getJobCountsAsync();
  await Promise.all([queue.close(), unbatched.close()]);
});
