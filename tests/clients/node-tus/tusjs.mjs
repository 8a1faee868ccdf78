// Drives tus-js-client 4.3.1 against a chunkd server for tests/clients/test_tus_js.py.
// Usage: node tusjs.mjs <scenario> <endpoint> <token|-> ; prints one JSON line with the outcome.
import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import * as tusModule from 'tus-js-client'

const tus = tusModule.default ?? tusModule
const [scenario, endpoint, token] = process.argv.slice(2)
const headers = token && token !== '-' ? { Authorization: `Bearer ${token}` } : {}
const sha256 = (buf) => createHash('sha256').update(buf).digest('hex')

function run (input, options) {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(input, {
      endpoint,
      headers,
      retryDelays: [0, 200, 500],
      metadata: { filename: `${scenario}.bin`, filetype: 'application/octet-stream' },
      onError: reject,
      onSuccess: () => resolve(upload),
      ...options,
    })
    upload.start()
  })
}

async function main () {
  const data = randomBytes(scenario === 'parallel' ? 3 * 1024 * 1024 + 17 : 1024 * 1024 + 5)
  const out = { scenario, sha256: sha256(data), size: data.length }
  if (scenario === 'parallel') {
    const upload = await run(data, { parallelUploads: 4 })
    out.url = upload.url
  } else if (scenario === 'creation-with-upload') {
    const upload = await run(data, { uploadDataDuringCreation: true, chunkSize: 256 * 1024 })
    out.url = upload.url
  } else if (scenario === 'deferred') {
    const stream = Readable.from((function * () {
      for (let i = 0; i < data.length; i += 100_000) yield data.subarray(i, i + 100_000)
    })())
    const upload = await run(stream, { uploadLengthDeferred: true, chunkSize: 300 * 1024 })
    out.url = upload.url
  } else if (scenario === 'override') {
    const upload = await run(data, { overridePatchMethod: true, chunkSize: 400 * 1024 })
    out.url = upload.url
  } else if (scenario === 'abort') {
    out.url = await new Promise((resolve, reject) => {
      let aborted = false
      const upload = new tus.Upload(data, {
        endpoint,
        headers,
        chunkSize: 128 * 1024,
        onError: reject,
        onSuccess: () => reject(new Error('the upload finished before it was aborted')),
        onChunkComplete: (chunk, sent) => {
          if (aborted || sent < 256 * 1024) return
          aborted = true
          const url = upload.url
          upload.abort(true).then(() => resolve(url), reject)
        },
      })
      upload.start()
    })
  } else {
    throw new Error(`unknown scenario ${scenario}`)
  }
  console.log(JSON.stringify(out))
}

main().catch((err) => { console.error(String(err && err.stack || err)); process.exit(1) })
