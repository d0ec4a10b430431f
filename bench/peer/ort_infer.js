// ONNX Runtime peer for `finch bench infer`: an ONNX file (bench/peer/export_resnet50_onnx.py:
// torchvision's ResNet-50 through torch.onnx.export) in onnxruntime-node's CPU execution
// provider, graph optimisations on (level "all"), the given intra-op threads, one inter-op
// thread, random input. Warm-up runs are excluded. Prints one JSON object like finch's.
//
// usage: NODE_PATH=build/npm/node_modules node ort_infer.js MODEL.onnx [--batch 1]
//            [--size 224] [--threads 2] [--iters 10] [--warmup 2]
const fs = require('fs');
const ort = require('onnxruntime-node');

function option(args, name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

function percentile(values, p) {
  const v = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (v.length - 1);
  const lo = Math.floor(rank), hi = Math.min(lo + 1, v.length - 1);
  return v[lo] + (rank - lo) * (v[hi] - v[lo]);
}

async function main() {
  const args = process.argv.slice(2);
  const model = args[0];
  const batch = option(args, '--batch', 1), size = option(args, '--size', 224);
  const threads = option(args, '--threads', 2), iters = option(args, '--iters', 10);
  const warmup = option(args, '--warmup', 2);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
    executionMode: 'sequential'});
  const data = new Float32Array(batch * 3 * size * size);
  for (let i = 0; i < data.length; ++i) data[i] = Math.random() * 2 - 1;
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data, [batch, 3, size, size])};
  for (let i = 0; i < warmup; ++i) await session.run(feeds);
  const times = [];
  for (let i = 0; i < iters; ++i) {
    const start = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  const load = Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  const total = times.reduce((a, b) => a + b, 0);
  process.stdout.write(JSON.stringify({
    bench: 'infer', model, runtime: `onnxruntime-node ${require('onnxruntime-node/package.json').version}`,
    batch, size, threads, img_per_s: (1000 * batch * iters) / total,
    latency_ms: {p50: percentile(times, 50), p90: percentile(times, 90), p99: percentile(times, 99)},
    load_avg_1min: load}) + '\n');
}

main().catch((e) => { process.stderr.write(String(e.stack || e) + '\n'); process.exit(1); });
