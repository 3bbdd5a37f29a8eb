/*
 * start.js - run @20minutes/s3rver (an S3-compatible server that checks
 * SigV4 signatures) for tresor's remote tests.
 *
 *   S3RVER_ACCESS_KEY=AK S3RVER_SECRET_KEY=SK \
 *   node --openssl-legacy-provider start.js --port P --dir D --bucket B
 *
 * Listens on 127.0.0.1 only (port 0: any free port).  The built-in
 * S3RVER/S3RVER account is revoked and the key pair from the environment
 * (never argv) is the only one accepted; requests without a signature are
 * refused with 403 AccessDenied instead of being served anonymously.
 * Prints "ready PORT" on stdout once listening, then runs until killed.
 *
 * --openssl-legacy-provider is needed: ListObjectsV2 continuation tokens
 * are DES-encrypted and pagination answers 500 without it.
 */
'use strict'

const S3rver = require('@20minutes/s3rver')
const AWSAccount = require('@20minutes/s3rver/lib/models/account')

function usage(msg) {
  process.stderr.write(`start.js: ${msg}\n` +
    'usage: start.js --port P --dir D --bucket B ' +
    '(key pair in S3RVER_ACCESS_KEY / S3RVER_SECRET_KEY)\n')
  process.exit(2)
}

function parseArgs(argv) {
  const opt = { port: null, dir: null, buckets: [], verbose: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--port') opt.port = Number(val())
    else if (a === '--dir') opt.dir = val()
    else if (a === '--bucket') opt.buckets.push(val())
    else if (a === '--verbose') opt.verbose = true
    else usage(`unknown argument ${a}`)
  }
  if (opt.port === null || !Number.isInteger(opt.port) || opt.port < 0 || opt.port > 65535)
    usage('--port must be 0..65535')
  if (!opt.dir) usage('--dir is required')
  if (opt.buckets.length === 0) usage('--bucket is required')
  return opt
}

/* Koa middleware put first: anything without an AWS signature is refused. */
function rejectUnsigned(ctx, next) {
  const signed = 'authorization' in ctx.headers ||
    'X-Amz-Algorithm' in ctx.query || 'Signature' in ctx.query
  if (signed || ctx.method === 'OPTIONS') return next()
  ctx.status = 403
  ctx.type = 'application/xml'
  ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>' +
    '<Message>Anonymous access is disabled on this test server</Message></Error>'
}

async function main() {
  const opt = parseArgs(process.argv.slice(2))
  const accessKey = process.env.S3RVER_ACCESS_KEY
  const secretKey = process.env.S3RVER_SECRET_KEY
  if (!accessKey || !secretKey) usage('S3RVER_ACCESS_KEY and S3RVER_SECRET_KEY must be set')

  AWSAccount.DUMMY_ACCOUNT.revokeAccessKey('S3RVER')
  AWSAccount.DUMMY_ACCOUNT.createKeyPair(accessKey, secretKey)

  const server = new S3rver({
    address: '127.0.0.1',
    port: opt.port,
    directory: opt.dir,
    silent: !opt.verbose,
    allowMismatchedSignatures: false,
    resetOnClose: false,
    vhostBuckets: true,
    configureBuckets: opt.buckets.map((name) => ({ name })),
  })
  server.middleware.unshift(rejectUnsigned)

  const addr = await server.run()
  process.stdout.write(`ready ${addr.port}\n`)

  const stop = () => server.close().finally(() => process.exit(0))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch((err) => {
  process.stderr.write(`start.js: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
