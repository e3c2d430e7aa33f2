// FlowProducer.add (one PUSHF) of a parent on BQ_QUEUE with two children on the queues
// BQ_QUEUE-a and BQ_QUEUE-b; a worker per queue. Children return values; the parent
// reads them with job.getChildrenValues() and reports the order things ran in.
import { FlowProducer, Worker, connection, deferred, queueName, run } from "./harness.ts";

run(async (out) => {
  const queues = { a: `${queueName}-a`, b: `${queueName}-b` };
  const flow = new FlowProducer({ connection: connection() });
  const order: string[] = [];
  out.order = order;
  const parentDone = deferred();
  const node = await flow.add({
    name: "parent",
    queueName,
    data: { role: "parent" },
    children: [
      { name: "child-a", queueName: queues.a, data: { n: 1 } },
      { name: "child-b", queueName: queues.b, data: { n: 2 } },
    ],
  });
  out.parentId = node.job.id;
  out.childIds = (node.children ?? []).map((c) => c.job.id);
  out.childQueues = (node.children ?? []).map((c) => c.job.queueName);
  const workers = [queues.a, queues.b].map(
    (q) =>
      new Worker(
        q,
        async (job) => {
          order.push(job.name);
          return { doubled: (job.data as { n: number }).n * 2 };
        },
        { connection: connection() },
      ),
  );
  const parentWorker = new Worker(
    queueName,
    async (job) => {
      order.push(job.name);
      out.values = await job.getChildrenValues();
      out.parentData = job.data;
      parentDone.resolve();
      return "parent done";
    },
    { connection: connection() },
  );
  await parentDone.promise;
  await Promise.all([...workers, parentWorker].map((w) => w.close()));
  await flow.close();
});
