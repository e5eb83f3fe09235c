// Browser side of `msam serve`: shows the scan in four views, sends clicks to the server and
// overlays the mask it answers with.
import { Niivue, NVImage, SLICE_TYPE, SHOW_RENDER, MULTIPLANAR_TYPE } from '/niivue/index.js'

const $ = (id) => document.getElementById(id)
const params = new URLSearchParams(location.search)
const token = params.get('token')

// What the browser test (tests/browser/viewer_test.mjs) reads.
const viewer = {
  sessionId: null,
  clicks: 0, // clicks the server holds, from its last answer
  lastResponse: null,
  overlayVoxels: 0,
  ready: false,
  error: null,
  // CSS-pixel rectangle of a 2D view in the page ('axial', 'coronal' or 'sagittal'), or null
  viewRect(name) {
    const type = { axial: SLICE_TYPE.AXIAL, coronal: SLICE_TYPE.CORONAL, sagittal: SLICE_TYPE.SAGITTAL }[name]
    const tile = nv.screenSlices.find((s) => s.axCorSag === type)
    if (!tile) return null
    const canvas = $('views').getBoundingClientRect()
    const [left, top, width, height] = tile.leftTopWidthHeight.map((v) => v / nv.uiData.dpr)
    return { x: canvas.left + left, y: canvas.top + top, width, height }
  },
}
window.msamViewer = viewer

const nv = new Niivue({
  backColor: [0, 0, 0, 1],
  crosshairColor: [0.2, 0.9, 0.2, 1], // not NiiVue's red, which is the mask's colour here
  dragAndDropEnabled: false, // a dropped file is uploaded to the server, not opened locally
  multiplanarShowRender: SHOW_RENDER.ALWAYS,
  multiplanarLayout: MULTIPLANAR_TYPE.GRID,
  show3Dcrosshair: true,
})
const layers = { scan: null, mask: null, markers: null }
let queue = Promise.resolve()

function setStatus(text, error = null) {
  viewer.error = error
  $('status').textContent = text
  $('status').classList.toggle('error', error !== null)
}

function fail(err) {
  setStatus(`error: ${err.message}`, err.message)
}

// Server actions run one after another so that masks and answers arrive in click order.
function enqueue(task) {
  queue = queue.then(task).catch(fail)
}

async function api(path, init = {}) {
  const headers = new Headers(init.headers)
  if (token) headers.set('Authorization', `Bearer ${token}`)
  const res = await fetch(path, { ...init, headers })
  if (!res.ok) {
    const text = await res.text()
    let message = `${res.status} ${res.statusText}`
    try {
      message = JSON.parse(text).error ?? message
    } catch {
      // not JSON: keep the HTTP status
    }
    throw new Error(message)
  }
  return res
}

const post = (path, body) =>
  api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body ?? {}) })

const sessionPath = (suffix = '') => `/api/sessions/${encodeURIComponent(viewer.sessionId)}${suffix}`

// Fetched here rather than by NiiVue so that the Authorization header goes with it.
async function fetchImage(suffix) {
  const buffer = await (await api(sessionPath(suffix))).arrayBuffer()
  return NVImage.loadFromUrl({ url: buffer, name: `${suffix.slice(1)}.nii.gz` })
}

// NiiVue indexes a copy of the grid reoriented to RAS; toRASvox (absent when the file is
// already RAS) maps those indices back to the file's own voxel indices, which the server uses.
function serverVoxel(frac) {
  const [x, y, z] = nv.frac2vox(frac)
  const m = layers.scan.toRASvox
  if (!m) return [x, y, z]
  return [0, 1, 2].map((r) => Math.round(m[r] * x + m[4 + r] * y + m[8 + r] * z + m[12 + r]))
}

// The mask and the click markers are overlays on the scan's grid whose voxels are rewritten
// after each action (redrawOverlays), rather than volumes removed and added again.
function addOverlays(scan) {
  const mask = NVImage.zerosLike(scan, 'uint8')
  const markers = NVImage.zerosLike(mask)
  Object.assign(mask, { colormap: 'red', opacity: Number($('opacity').value), cal_min: 0.5, cal_max: 1 })
  markers.setColormapLabel({
    R: [0, 255, 0], G: [0, 255, 200], B: [0, 0, 255], A: [0, 255, 255], I: [0, 1, 2],
    labels: ['', 'lesion click', 'background click'],
  })
  for (const overlay of [mask, markers]) {
    Object.assign(overlay.hdr, { scl_slope: 1, scl_inter: 0 }) // copied from the scan
    nv.addVolume(overlay)
  }
  Object.assign(layers, { mask, markers })
}

// updateGLVolume() would upload the scan again too, which takes seconds per click on a large
// scan; refreshLayers() is its step for one layer (internal API of the pinned NiiVue): layer 1
// starts the overlay texture afresh, layer 2 blends into it.
function redrawOverlays() {
  nv.refreshLayers(layers.mask, 1)
  nv.refreshLayers(layers.markers, 2)
  nv.drawScene()
}

function drawMarkers(clicks) {
  const markers = layers.markers.img
  const [, nx, ny, nz] = layers.markers.hdr.dims
  markers.fill(0)
  for (const { point, label } of clicks) {
    // a 3×3×3 block: one voxel is too small to see on a large scan
    for (let dz = -1; dz <= 1; dz++) {
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const [x, y, z] = [point[0] + dx, point[1] + dy, point[2] + dz]
          if (x < 0 || y < 0 || z < 0 || x >= nx || y >= ny || z >= nz) continue
          markers[x + nx * (y + ny * z)] = label === 'fg' ? 1 : 2
        }
      }
    }
  }
}

function describe(answer, roundTripMs) {
  // the session info lists the clicks, the action answers count them
  const clicks = Array.isArray(answer.clicks) ? answer.clicks.length : answer.clicks
  const parts = [`${clicks} click${clicks === 1 ? '' : 's'}`]
  if (answer.voxels !== undefined) parts.push(`${answer.voxels} voxels`)
  if (answer.volume_mm3 !== undefined) parts.push(`${(answer.volume_mm3 / 1000).toFixed(2)} ml`)
  if (roundTripMs !== undefined) parts.push(`model ${Math.round(answer.ms)} ms`, `round trip ${Math.round(roundTripMs)} ms`)
  return parts.join(' · ')
}

// Shows the server's mask and click markers.
async function refresh() {
  const [info, mask] = await Promise.all([(await api(sessionPath())).json(), fetchImage('/mask')])
  if (mask.img.length !== layers.mask.img.length) throw new Error('the mask and the scan differ in size')
  layers.mask.img.set(mask.img)
  drawMarkers(info.clicks)
  redrawOverlays()
  let voxels = 0
  for (const v of mask.img) if (v !== 0) voxels++
  viewer.overlayVoxels = voxels
  viewer.clicks = info.clicks.length
  $('undo').disabled = $('reset').disabled = viewer.clicks === 0
  return info
}

async function act(path, body) {
  const start = performance.now()
  const answer = await (await post(sessionPath(path), body)).json()
  const roundTrip = performance.now() - start
  viewer.lastResponse = answer
  await refresh()
  setStatus(describe(answer, roundTrip))
}

async function openSession(id) {
  viewer.sessionId = id
  const query = new URLSearchParams({ session: id })
  if (token) query.set('token', token)
  history.replaceState(null, '', `?${query}`)
  $('drop').hidden = true
  setStatus('loading scan…')
  layers.scan = await fetchImage('/scan')
  nv.addVolume(layers.scan)
  addOverlays(layers.scan)
  const info = await refresh()
  $('download').disabled = false
  viewer.ready = true
  setStatus(describe(info))
}

// The channel to read from a multi-channel scan, or null (a single-channel scan).
function channel() {
  const text = $('channel').value.trim()
  return text === '' ? null : Number(text)
}

async function upload(file) {
  setStatus(`uploading ${file.name}…`)
  const headers = { 'X-Filename': file.name, 'Content-Type': 'application/octet-stream' }
  const query = channel() === null ? '' : `?channel=${channel()}`
  const answer = await (await api(`/api/sessions${query}`, { method: 'POST', headers, body: file })).json()
  await openSession(answer.id)
}

async function openPath(path) {
  setStatus(`opening ${path}…`)
  await openSession((await (await post('/api/sessions', { path, channel: channel() })).json()).id)
}

async function download() {
  const format = $('format').value
  const res = await api(sessionPath(`/mask${format ? `?format=${format}` : ''}`))
  const link = document.createElement('a')
  link.href = URL.createObjectURL(await res.blob())
  link.download = `mask_${viewer.sessionId}.${format || 'nii.gz'}`
  link.click()
  URL.revokeObjectURL(link.href)
}

function setWindow(preset) {
  const scan = layers.scan
  if (!scan) return
  if (preset === 'auto') {
    ;[scan.cal_min, scan.cal_max] = [scan.robust_min, scan.robust_max]
  } else {
    const [width, level] = preset.split(',').map(Number)
    ;[scan.cal_min, scan.cal_max] = [level - width / 2, level + width / 2]
  }
  nv.updateGLVolume()
}

// A click is a press and release of the left button at the same place in a 2D view: NiiVue
// has already moved the crosshair there. A press that moved was a drag and sends nothing.
function watchClicks(canvas) {
  let press = null
  canvas.addEventListener('pointerdown', (e) => {
    press = { x: e.clientX, y: e.clientY, button: e.button }
  })
  canvas.addEventListener('pointerup', (e) => {
    const p = press
    press = null
    if (!p || p.button !== 0 || e.ctrlKey || e.altKey || e.metaKey || !viewer.ready) return
    if (Math.hypot(e.clientX - p.x, e.clientY - p.y) > 3) return
    const rect = canvas.getBoundingClientRect()
    const tile = nv.screenSlices[nv.tileIndex((e.clientX - rect.left) * nv.uiData.dpr, (e.clientY - rect.top) * nv.uiData.dpr)]
    if (!tile || tile.axCorSag === SLICE_TYPE.RENDER) return
    const point = serverVoxel(nv.scene.crosshairPos)
    enqueue(() => act('/clicks', { point, label: e.shiftKey ? 'bg' : 'fg', space: 'voxel' }))
  })
}

function watchDrops(zone) {
  document.addEventListener('dragover', (e) => {
    e.preventDefault()
    zone.classList.add('over')
  })
  document.addEventListener('dragleave', () => zone.classList.remove('over'))
  document.addEventListener('drop', (e) => {
    e.preventDefault()
    zone.classList.remove('over')
    const file = e.dataTransfer.files[0]
    if (file && !viewer.sessionId) enqueue(() => upload(file))
  })
}

function wireControls() {
  $('undo').onclick = () => enqueue(() => act('/undo'))
  $('reset').onclick = () => enqueue(() => act('/reset'))
  $('download').onclick = () => download().catch(fail)
  $('file').onchange = (e) => enqueue(() => upload(e.target.files[0]))
  $('open').onsubmit = (e) => {
    e.preventDefault()
    enqueue(() => openPath($('path').value.trim()))
  }
  for (const button of $('windows').querySelectorAll('button')) {
    button.onclick = () => setWindow(button.dataset.window)
  }
  $('opacity').oninput = (e) => {
    if (!layers.mask) return
    layers.mask.opacity = Number(e.target.value)
    redrawOverlays()
  }
}

await nv.attachToCanvas($('views'))
nv.setSliceType(SLICE_TYPE.MULTIPLANAR)
watchClicks($('views'))
watchDrops($('drop'))
wireControls()
const session = params.get('session')
if (session) {
  enqueue(() => openSession(session))
} else {
  $('drop').hidden = false
  setStatus('no scan open')
}
