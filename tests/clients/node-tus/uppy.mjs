// A browser-free Uppy run: @uppy/core + @uppy/tus upload three Buffers to a chunkd server.
// Usage: node uppy.mjs <endpoint> <token|-> ; prints one JSON line: [{name, size, sha256, url}, ...].
import { createHash, randomBytes } from 'node:crypto'
import Uppy from '@uppy/core'
import Tus from '@uppy/tus'

const [endpoint, token] = process.argv.slice(2)
const headers = token && token !== '-' ? { Authorization: `Bearer ${token}` } : {}
const uppy = new Uppy({ autoProceed: false }).use(Tus, { endpoint, headers, chunkSize: 256 * 1024, limit: 2 })
const files = [['a.bin', 700_001], ['b.txt', 3], ['c.bin', 1_500_000]].map(([name, size]) => {
  const data = randomBytes(size)
  const type = name.endsWith('.txt') ? 'text/plain' : 'application/octet-stream'
  const id = uppy.addFile({ name, type, data, source: 'node' })
  return { id, name, size, sha256: createHash('sha256').update(data).digest('hex') }
})
const result = await uppy.upload()
if (result.failed.length) {
  console.error(JSON.stringify(result.failed.map((f) => String(f.error))))
  process.exit(1)
}
const urls = Object.fromEntries(result.successful.map((f) => [f.id, f.uploadURL ?? f.tus?.uploadUrl]))
console.log(JSON.stringify(files.map((f) => ({ name: f.name, size: f.size, sha256: f.sha256, url: urls[f.id] }))))
process.exit(0)
