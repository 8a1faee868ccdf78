// Drives tus-js-client 4.3.1 in its IETF-draft modes against a chunkd server for tests/clients/test_ietf_js.py.
// Usage: node ietf.mjs <scenario> <protocol> <endpoint> <token|-> ; prints one JSON line with the outcome.
// protocol is 'ietf-draft-03' (sends Upload-Draft-Interop-Version: 5) or 'ietf-draft-05' (sends 6).
import { createHash, randomBytes } from 'node:crypto'
import * as tusModule from 'tus-js-client'

const tus = tusModule.default ?? tusModule
const [scenario, protocol, endpoint, token] = process.argv.slice(2)
const headers = token && token !== '-' ? { Authorization: `Bearer ${token}` } : {}
const sha256 = (buf) => createHash('sha256').update(buf).digest('hex')

function upload (input, options, seen) {
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(input, {
      endpoint,
      protocol,
      headers,
      chunkSize: 256 * 1024,
      retryDelays: [0, 100, 200, 400, 800, 1600],
      onError: reject,
      onSuccess: () => resolve(u),
      onBeforeRequest: (req) => { seen.versions.add(req.getHeader('Upload-Draft-Interop-Version')) },
      onAfterResponse: (req, res) => {
        seen.requests.push([req.getMethod(), res.getStatus(), res.getHeader('Upload-Offset') ?? null])
      },
      ...options,
    })
    u.start()
  })
}

// tus-js-client 4.3.1's Node HTTP stack settles a request on the answer's 'end' only: when a connection is cut
// after an answer's head but before its body ends (an error answer's text), the promise never settles, the
// upload stops silently and Node exits 0 with nothing printed. This stack fails such a request instead, so the
// client's own retry logic (the thing under test, with the server's answers) takes over.
function cutAnswersFail () {
  return wrappedStack('fails-cut-answers', (req, method, send) => (body) => new Promise((resolve, reject) => {
    send(body).then(resolve, reject)
    req.getUnderlyingObject()?.on('response', (res) => {
      res.on('close', () => { if (!res.complete) reject(new Error('the connection was cut during the answer')) })
    })
  }))
}

// tus-js-client's own Node HTTP stack, each request's send() replaced by wrap(req, method, originalSend)
function wrappedStack (name, wrap) {
  const base = tus.defaultOptions.httpStack
  return {
    getName: () => name,
    createRequest (method, url) {
      const req = base.createRequest(method, url)
      req.send = wrap(req, method, req.send.bind(req))
      return req
    },
  }
}

async function main () {
  const data = randomBytes(1024 * 1024 + 5)
  const seen = { versions: new Set(), requests: [] }
  const out = { scenario, protocol, sha256: sha256(data), size: data.length }
  if (scenario === 'chunks') {
    out.url = (await upload(data, {}, seen)).url
  } else if (scenario === 'flaky') {
    // the endpoint is a proxy that cuts connections: the client's own retries resume from HEAD's offset
    out.url = (await upload(data, { chunkSize: 128 * 1024, httpStack: cutAnswersFail() }, seen)).url
  } else if (scenario === 'lost-completion') {
    // the server takes the completing append but its answer is lost (as when a connection drops just then):
    // the client's retry asks HEAD for the offset and carries on from what it says
    let lost = false
    const httpStack = wrappedStack('loses-one-answer', (req, method, send) => async (body) => {
      const res = await send(body)
      if (!lost && method === 'PATCH' && req.getHeader('Upload-Complete') === '?1') {
        lost = true
        throw new Error('the connection dropped before the answer arrived')
      }
      return res
    })
    out.url = (await upload(data, { chunkSize: 256 * 1024, httpStack }, seen)).url
    if (!lost) throw new Error('no completing append was sent')
  } else if (scenario === 'creation-with-upload') {
    out.url = (await upload(data, { uploadDataDuringCreation: true }, seen)).url
  } else if (scenario === 'resume') {
    // first attempt: stopped (without terminating the upload) once 512 KiB are acknowledged
    out.url = await new Promise((resolve, reject) => {
      let stopped = false
      const u = new tus.Upload(data, {
        endpoint,
        protocol,
        headers,
        chunkSize: 128 * 1024,
        onError: reject,
        onSuccess: () => reject(new Error('the upload finished before it was stopped')),
        onChunkComplete: (chunk, sent) => {
          if (stopped || sent < 512 * 1024) return
          stopped = true
          u.abort(false).then(() => resolve(u.url), reject)
        },
      })
      u.start()
    })
    // second attempt: a new client resumes from the stored upload URL (HEAD, then appends from its offset)
    const resumed = await upload(data, { uploadUrl: out.url }, seen)
    if (resumed.url !== out.url) throw new Error(`resumed into another upload ${resumed.url}`)
  } else {
    throw new Error(`unknown scenario ${scenario}`)
  }
  out.versions = [...seen.versions]
  out.requests = seen.requests
  console.log(JSON.stringify(out))
}

let settled = false
process.on('beforeExit', () => {
  // nothing left to wait for but no outcome: the client stopped without calling onSuccess or onError
  if (!settled) { console.error('the upload stopped without success or error'); process.exit(2) }
})
main().then(() => { settled = true }, (err) => { console.error(String(err && err.stack || err)); process.exit(1) })
