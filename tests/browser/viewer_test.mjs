// Browser test of the `msam serve` viewer: opens a session in headless Chromium, clicks into the
// axial view and checks that the server got the click and that the page drew the mask.
//
//   node tests/browser/viewer_test.mjs --scan SCAN --screenshot OUT.png
//        (--msam MSAM --checkpoint CKPT | --server-url URL) [--chromium PATH]
//
// With --msam it starts `MSAM serve --checkpoint CKPT --port 0 --data-root <folder of SCAN>` and
// stops it at the end; with --server-url it uses a server already running whose data root holds
// SCAN. Exit status 0 when the test passed, 1 when it failed, 2 on bad arguments; the last line
// printed is "1 passed, 0 failed" or "0 passed, 1 failed".
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { parseArgs } from 'node:util'

const HARD_TIMEOUT_S = 150
const STEP_TIMEOUT_MS = 30000
// Software WebGL2 (SwiftShader) for NiiVue, and nothing that reaches the network.
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--use-gl=angle', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
  '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
]

let opt
try {
  opt = parseArgs({
    options: {
      msam: { type: 'string' },
      checkpoint: { type: 'string' },
      scan: { type: 'string' },
      screenshot: { type: 'string' },
      'server-url': { type: 'string' },
      chromium: { type: 'string', default: '/usr/bin/chromium' },
    },
  }).values
  if (!opt.scan || !opt.screenshot) throw new Error('--scan and --screenshot are required')
  if (!opt['server-url'] === !opt.msam) throw new Error('give either --msam (with --checkpoint) or --server-url')
  if (opt.msam && !opt.checkpoint) throw new Error('--msam needs --checkpoint')
} catch (err) {
  console.error(`viewer_test: ${err.message}`)
  console.error('usage: viewer_test.mjs --scan SCAN --screenshot OUT.png (--msam MSAM --checkpoint CKPT | --server-url URL) [--chromium PATH]')
  process.exit(2)
}

const cleanups = []
let finished = false

async function finish(error) {
  if (finished) return
  finished = true
  for (const cleanup of cleanups.reverse()) await within(cleanup().catch(() => {}), 10000)
  if (error) console.log(`viewer_test: FAIL: ${error.message ?? error}`)
  console.log(error ? '0 passed, 1 failed' : '1 passed, 0 failed')
  process.exit(error ? 1 : 0)
}

// Resolves to whether the promise settled within ms.
function within(promise, ms) {
  let timer
  const timeout = new Promise((resolve) => (timer = setTimeout(resolve, ms, false)))
  return Promise.race([promise.then(() => true), timeout]).finally(() => clearTimeout(timer))
}

async function until(check, what) {
  const deadline = Date.now() + STEP_TIMEOUT_MS
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

function startServer() {
  const dataRoot = path.dirname(path.resolve(opt.scan))
  const args = ['serve', '--checkpoint', opt.checkpoint, '--port', '0', '--data-root', dataRoot]
  const server = spawn(opt.msam, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  cleanups.push(async () => {
    if (server.exitCode !== null || server.signalCode !== null) return
    const exited = new Promise((resolve) => server.once('exit', resolve))
    server.kill('SIGTERM')
    if (!(await within(exited, 5000))) server.kill('SIGKILL')
  })
  return new Promise((resolve, reject) => {
    server.on('error', reject)
    server.on('exit', (code, signal) => reject(new Error(`msam serve exited (${signal ?? code}) before it listened`)))
    readline.createInterface({ input: server.stdout }).on('line', (line) => {
      console.log(`[msam] ${line}`)
      const listening = line.match(/msam serve: listening on (http:\/\/127\.0\.0\.1:\d+)/)
      if (listening) resolve(listening[1])
    })
  })
}

async function api(base, route, init) {
  const res = await fetch(base + route, init)
  const text = await res.text()
  if (!res.ok) throw new Error(`${route}: HTTP ${res.status}: ${text}`)
  return JSON.parse(text)
}

// Pixels of the rectangle that differ between two screenshots, and pixels that turned red,
// decoded by the page itself so the test needs no PNG library.
function comparePixels(page, before, after, rect) {
  return page.evaluate(async ({ before, after, rect }) => {
    const pixels = async (png) => {
      const img = new Image()
      img.src = `data:image/png;base64,${png}`
      await img.decode()
      const context = new OffscreenCanvas(rect.width, rect.height).getContext('2d')
      context.drawImage(img, -rect.x, -rect.y)
      return context.getImageData(0, 0, rect.width, rect.height).data
    }
    const [p, q] = await Promise.all([pixels(before), pixels(after)])
    const isRed = (d, i) => d[i] > 120 && d[i] > 2 * d[i + 1] && d[i] > 2 * d[i + 2]
    let changed = 0
    let red = 0
    for (let i = 0; i < p.length; i += 4) {
      if (p[i] !== q[i] || p[i + 1] !== q[i + 1] || p[i + 2] !== q[i + 2]) changed++
      if (isRed(q, i) && !isRed(p, i)) red++
    }
    return { changed, red }
  }, { before: before.toString('base64'), after: after.toString('base64'), rect })
}

// A 16³ NIfTI-1 file holding two channels on a 4th axis (MR sequences in one file, as the
// Decathlon stores them): channel 0 empty, channel 1 a bright cube.
function writeTwoChannelNifti() {
  const n = 16
  const header = Buffer.alloc(352)
  header.writeInt32LE(348, 0)
  ;[4, n, n, n, 2, 1, 1, 1].forEach((d, i) => header.writeInt16LE(d, 40 + 2 * i))
  header.writeInt16LE(16, 70) // float32
  header.writeInt16LE(32, 72)
  ;[1, 1, 1, 1, 1, 0, 0, 0].forEach((d, i) => header.writeFloatLE(d, 76 + 4 * i))
  header.writeFloatLE(352, 108)
  header.writeInt16LE(1, 254) // sform: the identity
  ;[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]].forEach((row, r) => row.forEach((v, c) => header.writeFloatLE(v, 280 + 16 * r + 4 * c)))
  header.write('n+1\0', 344, 'latin1')
  const voxels = new Float32Array(2 * n * n * n)
  for (let z = 4; z < 12; z++) for (let y = 4; y < 12; y++) for (let x = 4; x < 12; x++) voxels[n * n * n + (z * n + y) * n + x] = 100
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'msam-viewer-')), 'sequences.nii')
  fs.writeFileSync(file, Buffer.concat([header, Buffer.from(voxels.buffer)]))
  cleanups.push(async () => fs.rmSync(path.dirname(file), { recursive: true, force: true }))
  return file
}

async function main() {
  const require = createRequire(new URL('../../web/package.json', import.meta.url))
  const { chromium } = require('playwright-core')
  const base = opt['server-url'] ? opt['server-url'].replace(/\/$/, '') : await startServer()
  const json = { 'Content-Type': 'application/json' }
  const { id } = await api(base, '/api/sessions', { method: 'POST', headers: json, body: JSON.stringify({ path: path.basename(opt.scan) }) })
  console.log(`session ${id} at ${base}`)

  const browser = await chromium.launch({ executablePath: opt.chromium, args: CHROMIUM_ARGS, timeout: STEP_TIMEOUT_MS })
  cleanups.push(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } })
  page.setDefaultTimeout(STEP_TIMEOUT_MS)
  // The page may reach only the server under test.
  await page.route('**/*', (route) => (new URL(route.request().url()).hostname === '127.0.0.1' ? route.continue() : route.abort()))
  page.on('pageerror', (err) => console.log(`[page] ${err.message}`))
  page.on('console', (msg) => msg.type() === 'error' && console.log(`[page] ${msg.text()}`))
  const viewerState = () => page.evaluate(() => window.msamViewer && { ...window.msamViewer })
  const nextFrames = () => page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))))

  await page.goto(`${base}/?session=${encodeURIComponent(id)}`)
  await page.waitForFunction(() => window.msamViewer?.ready || window.msamViewer?.error)
  if ((await viewerState()).error) throw new Error(`page: ${(await viewerState()).error}`)
  await nextFrames()
  const rect = await page.evaluate(() => window.msamViewer.viewRect('axial'))
  if (!rect) throw new Error('the page shows no axial view')
  const clip = Object.fromEntries(Object.entries(rect).map(([k, v]) => [k, Math.round(v)]))
  const before = await page.screenshot()

  const t0 = Date.now()
  await page.mouse.click(rect.x + rect.width / 2, rect.y + rect.height / 2)
  await until(async () => (await api(base, `/api/sessions/${id}`)).clicks.length === 1, 'the server to hold 1 click')
  await page.waitForFunction(() => window.msamViewer.clicks === 1 || window.msamViewer.error)
  const state = await viewerState()
  if (state.error) throw new Error(`page: ${state.error}`)
  if (!(state.overlayVoxels > 0)) throw new Error(`the mask overlay is empty (server answer ${JSON.stringify(state.lastResponse)})`)
  await nextFrames()
  const after = await page.screenshot({ path: opt.screenshot })
  const { changed, red } = await comparePixels(page, before, after, clip)
  console.log(`click answered in ${Date.now() - t0} ms: ${JSON.stringify(state.lastResponse)}, ` +
    `${state.overlayVoxels} overlay voxels, ${changed} axial pixels changed (${red} turned red), screenshot ${opt.screenshot}`)
  if (changed === 0) throw new Error('the axial view looks the same after the click')

  // A multi-channel scan chosen in the page: without a channel the server's message shows;
  // with the channel field set, that channel opens as a session.
  const sequences = writeTwoChannelNifti()
  await page.goto(`${base}/`)
  await page.setInputFiles('#file', sequences)
  await page.waitForFunction(() => window.msamViewer.error || window.msamViewer.ready)
  const refused = (await viewerState()).error ?? ''
  if (!refused.includes('2 channels on a 4th axis')) throw new Error(`a two-channel upload without a channel: '${refused}'`)
  await page.goto(`${base}/`)
  await page.fill('#channel', '1')
  await page.setInputFiles('#file', sequences)
  await page.waitForFunction(() => window.msamViewer.ready || window.msamViewer.error)
  const opened = await viewerState()
  if (opened.error) throw new Error(`page: ${opened.error}`)
  const info = await api(base, `/api/sessions/${opened.sessionId}`)
  if (JSON.stringify(info.size) !== '[16,16,16]') throw new Error(`channel 1 opened as ${JSON.stringify(info.size)}`)
  console.log(`channel 1 of a two-channel upload opened as session ${opened.sessionId}; without a channel: '${refused}'`)
}

setTimeout(() => finish(new Error(`gave up after ${HARD_TIMEOUT_S} s`)), HARD_TIMEOUT_S * 1000)
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => finish(new Error(`stopped by ${signal}`)))
main().then(() => finish(), finish)
