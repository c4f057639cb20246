// OpenAPI document (stdin) -> Postman collection v2.1 (stdout), with openapi-to-postmanv2.
// The converter fakes example values with Math.random: it is seeded here, so the same document
// gives the same collection. Options come as JSON in argv[2]. Run by tests/postman/generate.py.
'use strict';

let seed = 20261201;
Math.random = function mulberry32() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const converter = require('openapi-to-postmanv2');

const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  const options = JSON.parse(process.argv[2] || '{}');
  converter.convert({ type: 'string', data: Buffer.concat(chunks).toString('utf8') }, options, (err, result) => {
    if (err || !result.result) {
      process.stderr.write(`openapi-to-postmanv2: ${err || result.reason}\n`);
      process.exit(1);
    }
    process.stdout.write(JSON.stringify(result.output[0].data));
  });
});
