// The stock SDK through a cluster whose owner the test kills midway: N jobs (argv[2]) are
// added through one broker's TCP port, a Worker (concurrency 8) takes them through
// another broker's (argv[4]), and after KILL_AT (argv[3]) completions the script prints
// `KILL` and goes on. Every job must complete after the SDK reconnects (at least once:
// a job whose ack was lost with the owner runs again).
import { Queue, Worker, connection, deferred, queueName, run } from "./harness.ts";

const N = Number(process.argv[2]);
const KILL_AT = Number(process.argv[3]);
const workerPort = Number(process.argv[4]);

run(async (out) => {
  const queue = new Queue<{ n: number }>(queueName, { connection: connection() });
  const added = await queue.addBulk(
    Array.from({ length: N }, (_, n) => ({ name: "task", data: { n } })),
  );
  out.added = added.map((job) => job.id);
  const completed = new Set<string>();
  let runs = 0;
  let errors = 0;
  const done = deferred();
  const worker = new Worker<{ n: number }, number>(
    queueName,
    async (job) => {
      runs++;
      await Bun.sleep(5);
      return job.data.n;
    },
    { connection: { ...connection(), port: workerPort }, concurrency: 8 },
  );
  worker.on("completed", (job) => {
    completed.add(job.id);
    out.completed = completed.size;
    if (completed.size === KILL_AT) console.log("KILL");
    if (completed.size === N) done.resolve();
  });
  // Refused acks and dropped connections around the kill: counted, not fatal.
  worker.on("error", () => errors++);
  worker.on("failed", () => errors++);
  await done.promise;
  out.completedIds = [...completed];
  out.runs = runs;
  out.errors = errors;
  await worker.close();
  await queue.close();
}, 90_000);
