// PetSeg mask editor: a Streamlit components-v2 module (see dashboard/editor.py for the Python side).
//
// The mask lives here as a Uint8Array of trimap labels (1 pet, 2 background, 3 border) at the photo's
// original size; painting, polygon fill, undo/redo, zoom and opacity never leave the browser. Python only
// hears from the editor when the user asks for something (save, apply, an assisted tool, prev/next): the
// event carries the whole mask run-length coded, so one click is one round trip.

const LABEL_RGBA = {
  1: [255, 96, 32, 255], // pet: orange
  2: [40, 120, 255, 80], // background: faint blue, so the photo stays readable
  3: [255, 230, 0, 255], // border: yellow
};
const CLASS_NAMES = { 1: "Pet", 2: "Background", 3: "Border" };
const MAX_UNDO = 40;
const CONFIRM_MS = 5000;
const DRAFT_PREFIX = "petseg-draft:"; // localStorage: unsaved edits of an image, restored after a reload
const DRAFT_DELAY_MS = 400;

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let editor = parentElement.__petsegEditor;
  if (!editor) {
    editor = createEditor(parentElement);
    parentElement.__petsegEditor = editor;
  }
  editor.send = setTriggerValue;
  editor.update(data || {});
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "title") node.title = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.appendChild(child);
  return node;
}

function rleDecode(runs, size) {
  const out = new Uint8Array(size);
  let pos = 0;
  for (let i = 0; i + 1 < runs.length; i += 2) {
    const end = Math.min(size, pos + runs[i + 1]);
    out.fill(runs[i], pos, end);
    pos = end;
  }
  return out;
}

function rleEncode(labels) {
  const runs = [];
  let value = labels[0];
  let count = 0;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === value) count++;
    else {
      runs.push(value, count);
      value = labels[i];
      count = 1;
    }
  }
  runs.push(value, count);
  return runs;
}

// A short fingerprint of a run-length coded mask: a draft is restored only onto the start it was drawn from.
function fingerprint(runs) {
  let h = 2166136261;
  for (const n of runs) h = Math.imul(h ^ n, 16777619) >>> 0;
  return `${runs.length}:${h.toString(16)}`;
}

function storage() {
  try { return window.localStorage; } catch (e) { return null; } // blocked storage: drafts are off, no error
}

function isTyping(target) {
  return !!target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function createEditor(parent) {
  const ed = {
    image: null, revision: null, width: 0, height: 0, zoom: 1, fit: true,
    cls: 1, tool: "brush", brush: 12, opacity: 0.55,
    labels: null, strokes: null, start: null, gt: null, preview: null,
    undo: [], redo: [], polygon: [], painting: false, last: null,
    dirty: false, editGen: 0, sentGen: 0, savedAck: null, confirm: null, send: null,
    startPrint: null, draftTimer: null,
  };

  // --- DOM -----------------------------------------------------------------------------------------
  const btn = (text, title, action, cls = "") => {
    const b = el("button", { type: "button", text, title, class: cls, "data-action": action });
    b.addEventListener("click", () => onButton(action));
    return b;
  };
  const classButtons = [1, 2, 3].map((c) => btn(CLASS_NAMES[c], `Paint ${CLASS_NAMES[c].toLowerCase()} (${c})`,
    `class-${c}`, `swatch swatch-${c}`));
  const toolButtons = [
    btn("Brush", "Brush (B)", "tool-brush"),
    btn("Eraser", "Eraser: paints background (E)", "tool-eraser"),
    btn("Polygon", "Polygon fill: click points, double-click or Enter to fill, Esc to cancel (P)", "tool-polygon"),
  ];
  const brushInput = el("input", { type: "range", min: "1", max: "80", value: String(ed.brush), "data-role": "brush" });
  const brushLabel = el("span", { class: "value" });
  const opacityInput = el("input", { type: "range", min: "0", max: "100", value: String(ed.opacity * 100),
    "data-role": "opacity" });
  const zoomLabel = el("span", { class: "value" });
  const undoButton = btn("Undo", "Undo (Ctrl+Z)", "undo");
  const redoButton = btn("Redo", "Redo (Ctrl+Y / Ctrl+Shift+Z)", "redo");
  const prevButton = btn("◀ Prev", "Previous image in the queue", "prev");
  const nextButton = btn("Next ▶", "Next image in the queue", "next");
  const position = el("span", { class: "value", "data-role": "position" });
  const toolRow = el("div", { class: "row" }, [
    el("span", { class: "group" }, classButtons),
    el("span", { class: "group" }, toolButtons),
    el("label", { class: "group" }, [el("span", { text: "Size" }), brushInput, brushLabel]),
    el("label", { class: "group" }, [el("span", { text: "Opacity" }), opacityInput]),
    el("span", { class: "group" }, [btn("−", "Zoom out (-)", "zoom-out"), zoomLabel, btn("+", "Zoom in (+)",
      "zoom-in"), btn("Fit", "Fit to the window (0)", "zoom-fit")]),
    el("span", { class: "group" }, [undoButton, redoButton]),
  ]);
  const saveButton = btn("Save", "Save as a new version (Ctrl+S)", "save", "primary");
  const actionRow = el("div", { class: "row" }, [
    el("span", { class: "group" }, [prevButton, position, nextButton]),
    el("span", { class: "group" }, [
      btn("GrabCut", "Refine with GrabCut: your pet / background brush strokes are kept as sure", "grabcut"),
      btn("Fill holes", "Enclosed background becomes pet", "fill_holes"),
      btn("Remove specks", "Tiny pet blobs become background", "remove_specks"),
      btn("Regenerate border", "Redraw the border band around the pet outline", "regenerate_border"),
    ]),
    el("span", { class: "group" }, [btn("Apply", "Send the mask to the page (readout, tools) without saving",
      "apply"), saveButton]),
  ]);
  const readout = el("div", { class: "readout", "data-role": "readout" });
  const status = el("div", { class: "status", "data-role": "status" });
  const banner = el("div", { class: "banner", "data-role": "banner" });

  const photo = el("img", { class: "layer photo", alt: "photo", draggable: "false" });
  const maskCanvas = el("canvas", { class: "layer mask", "data-role": "mask" });
  const uiCanvas = el("canvas", { class: "layer ui", "data-role": "canvas" });
  const stage = el("div", { class: "stage" }, [photo, maskCanvas, uiCanvas]);
  const viewport = el("div", { class: "viewport" }, [stage]);
  const root = el("div", { class: "petseg-editor", tabindex: "0", "data-ready": "" },
    [toolRow, actionRow, banner, viewport, el("div", { class: "footer" }, [readout, status])]);
  parent.appendChild(root);
  const maskCtx = maskCanvas.getContext("2d");
  const uiCtx = uiCanvas.getContext("2d");
  let overlay = null; // ImageData of maskCanvas

  // --- drawing the mask -----------------------------------------------------------------------------
  function paintOverlay(x0, y0, x1, y1, source) {
    const labels = source || ed.labels;
    const px = overlay.data;
    for (let y = y0; y < y1; y++) {
      let i = y * ed.width + x0;
      for (let x = x0; x < x1; x++, i++) {
        const rgba = LABEL_RGBA[labels[i]] || [0, 0, 0, 0];
        const o = i * 4;
        px[o] = rgba[0]; px[o + 1] = rgba[1]; px[o + 2] = rgba[2]; px[o + 3] = rgba[3];
      }
    }
    maskCtx.putImageData(overlay, 0, 0, x0, y0, x1 - x0, y1 - y0);
  }
  function redrawAll() {
    paintOverlay(0, 0, ed.width, ed.height, ed.preview || ed.labels);
  }

  function layout() {
    if (!ed.width) return;
    if (ed.fit) {
      const avail = Math.max(200, viewport.clientWidth - 4);
      // Fit means the whole photo in view: the window's height less the editor's own toolbars and readout.
      const chrome = toolRow.offsetHeight + actionRow.offsetHeight + 90;
      const tall = Math.max(240, window.innerHeight - chrome);
      ed.zoom = Math.max(0.25, Math.min(4, avail / ed.width, tall / ed.height));
    }
    const w = Math.round(ed.width * ed.zoom);
    const h = Math.round(ed.height * ed.zoom);
    stage.style.width = `${w}px`;
    stage.style.height = `${h}px`;
    uiCanvas.width = w;
    uiCanvas.height = h;
    zoomLabel.textContent = `${Math.round(ed.zoom * 100)}%`;
    drawUi();
  }

  function drawUi(pointer) {
    uiCtx.clearRect(0, 0, uiCanvas.width, uiCanvas.height);
    const z = ed.zoom;
    if (ed.polygon.length) {
      uiCtx.strokeStyle = "#ffffff";
      uiCtx.lineWidth = 2;
      uiCtx.setLineDash([6, 4]);
      uiCtx.beginPath();
      ed.polygon.forEach(([x, y], i) => (i ? uiCtx.lineTo(x * z, y * z) : uiCtx.moveTo(x * z, y * z)));
      if (pointer) uiCtx.lineTo(pointer.x * z, pointer.y * z);
      uiCtx.stroke();
      uiCtx.setLineDash([]);
      for (const [x, y] of ed.polygon) uiCtx.fillRect(x * z - 2, y * z - 2, 5, 5);
    }
    if (pointer && ed.tool !== "polygon" && !ed.preview) {
      uiCtx.strokeStyle = "#ffffff";
      uiCtx.lineWidth = 1.5;
      uiCtx.beginPath();
      uiCtx.arc(pointer.x * z, pointer.y * z, Math.max(1, (ed.brush / 2) * z), 0, 2 * Math.PI);
      uiCtx.stroke();
    }
  }

  // --- editing ----------------------------------------------------------------------------------------
  function snapshot() {
    ed.undo.push({ labels: ed.labels.slice(), strokes: ed.strokes.slice() });
    if (ed.undo.length > MAX_UNDO) ed.undo.shift();
    ed.redo = [];
  }
  function edited() {
    ed.dirty = true;
    ed.editGen++;
    refreshControls();
    updateReadout();
    scheduleDraft();
  }

  // --- the draft: unsaved edits survive a reload or a crash of the tab ---------------------------------
  function scheduleDraft() {
    clearTimeout(ed.draftTimer);
    ed.draftTimer = setTimeout(writeDraft, DRAFT_DELAY_MS);
  }
  function writeDraft() {
    const store = storage();
    if (!store || !ed.image || !ed.labels) return;
    if (!ed.dirty) { dropDraft(); return; }
    try {
      store.setItem(DRAFT_PREFIX + ed.image, JSON.stringify({
        start: ed.startPrint, shape: [ed.height, ed.width], mask: rleEncode(ed.labels), at: Date.now(),
      }));
    } catch (e) { /* full or blocked storage: the unload warning still protects the edits */ }
  }
  function dropDraft(image = ed.image) {
    clearTimeout(ed.draftTimer);
    const store = storage();
    if (store && image) store.removeItem(DRAFT_PREFIX + image);
  }
  function restoreDraft() {
    const store = storage();
    const raw = store && store.getItem(DRAFT_PREFIX + ed.image);
    if (!raw) return false;
    let draft = null;
    try { draft = JSON.parse(raw); } catch (e) { draft = null; }
    const size = ed.width * ed.height;
    if (!draft || draft.start !== ed.startPrint || !Array.isArray(draft.mask) || !Array.isArray(draft.shape)
        || draft.shape[0] !== ed.height || draft.shape[1] !== ed.width) {
      return false; // drawn from another start (a newer version was saved meanwhile): not applied
    }
    const labels = rleDecode(draft.mask, size);
    if (labels.some((v) => v < 1 || v > 3)) return false;
    snapshot(); // Undo goes back to the saved mask
    ed.labels = labels;
    ed.dirty = true;
    ed.editGen++;
    const when = new Date(draft.at).toLocaleTimeString();
    setStatus(`Restored your unsaved edits from ${when}: Save to keep them, Undo to discard them.`, "warning");
    return true;
  }
  // Leaving or reloading the page with unsaved edits asks first (the draft is kept either way).
  const onUnload = (event) => {
    if (!root.isConnected) { window.removeEventListener("beforeunload", onUnload); return; }
    if (!ed.dirty) return;
    writeDraft();
    event.preventDefault();
    event.returnValue = "";
  };
  window.addEventListener("beforeunload", onUnload);
  function restore(from, to) {
    if (!from.length) return;
    to.push({ labels: ed.labels, strokes: ed.strokes });
    const state = from.pop();
    ed.labels = state.labels;
    ed.strokes = state.strokes;
    redrawAll();
    edited();
  }

  function paintDisc(cx, cy, bounds) {
    const r = ed.brush / 2;
    const label = ed.tool === "eraser" ? 2 : ed.cls;
    const stroke = label === 1 ? 1 : label === 2 ? 2 : 0;
    const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(ed.width - 1, Math.ceil(cx + r));
    const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(ed.height - 1, Math.ceil(cy + r));
    const r2 = Math.max(r * r, 0.25);
    for (let y = y0; y <= y1; y++) {
      const dy = y + 0.5 - cy;
      for (let x = x0; x <= x1; x++) {
        const dx = x + 0.5 - cx;
        if (dx * dx + dy * dy <= r2) {
          const i = y * ed.width + x;
          ed.labels[i] = label;
          ed.strokes[i] = stroke;
        }
      }
    }
    bounds.x0 = Math.min(bounds.x0, x0); bounds.y0 = Math.min(bounds.y0, y0);
    bounds.x1 = Math.max(bounds.x1, x1 + 1); bounds.y1 = Math.max(bounds.y1, y1 + 1);
  }
  function paintSegment(a, b) {
    const bounds = { x0: ed.width, y0: ed.height, x1: 0, y1: 0 };
    const dist = Math.hypot(b.x - a.x, b.y - a.y);
    const steps = Math.max(1, Math.ceil(dist / Math.max(0.5, ed.brush / 4)));
    for (let s = 0; s <= steps; s++) {
      paintDisc(a.x + ((b.x - a.x) * s) / steps, a.y + ((b.y - a.y) * s) / steps, bounds);
    }
    if (bounds.x1 > bounds.x0 && bounds.y1 > bounds.y0) paintOverlay(bounds.x0, bounds.y0, bounds.x1, bounds.y1);
  }

  function fillPolygon() {
    if (ed.polygon.length < 3) {
      ed.polygon = [];
      drawUi();
      return;
    }
    const scratch = document.createElement("canvas");
    scratch.width = ed.width;
    scratch.height = ed.height;
    const ctx = scratch.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    ed.polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    ctx.fill();
    const alpha = ctx.getImageData(0, 0, ed.width, ed.height).data;
    snapshot();
    for (let i = 0; i < ed.labels.length; i++) if (alpha[i * 4 + 3] >= 128) ed.labels[i] = ed.cls;
    ed.polygon = [];
    redrawAll();
    drawUi();
    edited();
  }

  function toImage(event) {
    const rect = maskCanvas.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) * ed.width) / rect.width,
      y: ((event.clientY - rect.top) * ed.height) / rect.height,
    };
  }

  uiCanvas.addEventListener("pointerdown", (event) => {
    if (!ed.labels || ed.preview || event.button !== 0) return;
    root.focus({ preventScroll: true });
    const p = toImage(event);
    if (ed.tool === "polygon") {
      const first = ed.polygon[0];
      if (first && ed.polygon.length >= 3 && Math.hypot((p.x - first[0]) * ed.zoom, (p.y - first[1]) * ed.zoom) < 8) {
        fillPolygon();
      } else {
        ed.polygon.push([p.x, p.y]);
        drawUi(p);
      }
      return;
    }
    uiCanvas.setPointerCapture(event.pointerId);
    snapshot();
    ed.painting = true;
    ed.last = p;
    paintSegment(p, p);
  });
  uiCanvas.addEventListener("pointermove", (event) => {
    if (!ed.labels) return;
    const p = toImage(event);
    if (ed.painting) {
      paintSegment(ed.last, p);
      ed.last = p;
    }
    drawUi(p);
  });
  const endStroke = () => {
    if (!ed.painting) return;
    ed.painting = false;
    edited();
  };
  uiCanvas.addEventListener("pointerup", endStroke);
  uiCanvas.addEventListener("pointercancel", endStroke);
  uiCanvas.addEventListener("pointerleave", () => drawUi());
  uiCanvas.addEventListener("dblclick", () => {
    if (ed.tool === "polygon") fillPolygon();
  });

  // --- readout (same definitions as core.masks.iou_pet / changed_pixels) ----------------------------
  function updateReadout() {
    if (!ed.labels) return;
    const parts = [];
    if (ed.gt) {
      let inter = 0, union = 0;
      for (let i = 0; i < ed.labels.length; i++) {
        if (ed.gt[i] === 3) continue;
        const a = ed.labels[i] === 1, b = ed.gt[i] === 1;
        if (a && b) inter++;
        if (a || b) union++;
      }
      parts.push(`IoU vs original GT ${(union ? inter / union : 1).toFixed(3)}`);
    } else {
      parts.push("no original GT");
    }
    let changed = 0;
    for (let i = 0; i < ed.labels.length; i++) if (ed.labels[i] !== ed.start[i]) changed++;
    parts.push(`${changed.toLocaleString("en-US")} px changed from the start`);
    parts.push(ed.dirty ? "unsaved changes" : "no unsaved changes");
    readout.textContent = parts.join(" · ");
  }

  function refreshControls() {
    classButtons.forEach((b, i) => b.classList.toggle("active", ed.cls === i + 1 && ed.tool !== "eraser"));
    toolButtons.forEach((b) => b.classList.toggle("active", b.dataset.action === `tool-${ed.tool}`));
    brushLabel.textContent = `${ed.brush}px`;
    undoButton.disabled = !ed.undo.length || !!ed.preview;
    redoButton.disabled = !ed.redo.length || !!ed.preview;
    maskCanvas.style.opacity = String(ed.opacity);
    uiCanvas.style.cursor = ed.preview ? "not-allowed" : ed.tool === "polygon" ? "crosshair" : "none";
    root.dataset.dirty = ed.dirty ? "1" : "0";
  }

  // --- talking to Python ----------------------------------------------------------------------------
  function emit(action, withMask) {
    if (!ed.send || !ed.image) return;
    const payload = { action, image: ed.image, revision: ed.revision };
    if (withMask) {
      payload.shape = [ed.height, ed.width];
      payload.mask = rleEncode(ed.labels);
      payload.strokes = rleEncode(ed.strokes);
      ed.sentGen = ed.editGen;
    }
    setStatus(action === "save" ? "Saving…" : "Working…", "busy");
    ed.send("event", payload);
  }

  function setStatus(text, kind) {
    status.textContent = text || "";
    status.dataset.kind = kind || "";
  }

  function onButton(action) {
    if (action.startsWith("class-")) {
      ed.cls = Number(action.slice(6));
      if (ed.tool === "eraser") ed.tool = "brush";
    } else if (action.startsWith("tool-")) {
      ed.tool = action.slice(5);
      ed.polygon = [];
      drawUi();
    } else if (action === "zoom-in" || action === "zoom-out") {
      ed.fit = false;
      ed.zoom = Math.max(0.25, Math.min(8, ed.zoom * (action === "zoom-in" ? 1.25 : 0.8)));
      layout();
    } else if (action === "zoom-fit") {
      ed.fit = true;
      layout();
    } else if (action === "undo") {
      restore(ed.undo, ed.redo);
    } else if (action === "redo") {
      restore(ed.redo, ed.undo);
    } else if (action === "prev" || action === "next") {
      const now = Date.now();
      if (ed.dirty && !(ed.confirm && ed.confirm.action === action && now - ed.confirm.at < CONFIRM_MS)) {
        ed.confirm = { action, at: now };
        setStatus(`Unsaved changes: click ${action === "next" ? "Next" : "Prev"} again to discard them, ` +
          "or Save first.", "warning");
        return;
      }
      ed.confirm = null;
      if (ed.dirty) dropDraft(); // discarded on purpose
      ed.dirty = false;
      emit(action, false);
    } else if (!ed.preview) {
      emit(action, true); // save, apply and the assisted tools
    }
    refreshControls();
  }

  // Shortcuts work page-wide, not only while the canvas has focus; single keys leave text fields alone, Ctrl+S
  // saves the mask from anywhere (instead of the browser's "save page").
  const onKey = (event) => {
    if (!root.isConnected) { document.removeEventListener("keydown", onKey); return; }
    if (event.defaultPrevented || !ed.labels) return;
    const key = (event.key || "").toLowerCase();
    const mod = event.ctrlKey || event.metaKey;
    if (isTyping(event.target) && !(mod && key === "s")) return;
    let handled = true;
    if (mod && key === "z") onButton(event.shiftKey ? "redo" : "undo");
    else if (mod && key === "y") onButton("redo");
    else if (mod && key === "s") onButton("save");
    else if (mod) handled = false;
    else if (key === "1" || key === "2" || key === "3") onButton(`class-${key}`);
    else if (key === "b") onButton("tool-brush");
    else if (key === "e") onButton("tool-eraser");
    else if (key === "p") onButton("tool-polygon");
    else if (key === "enter" && ed.tool === "polygon") fillPolygon();
    else if (key === "escape") { ed.polygon = []; drawUi(); }
    else if (key === "backspace" && ed.polygon.length) { ed.polygon.pop(); drawUi(); }
    else if (key === "[" || key === "]") {
      ed.brush = Math.max(1, Math.min(80, ed.brush + (key === "]" ? 2 : -2)));
      brushInput.value = String(ed.brush);
      refreshControls();
    } else if (key === "+" || key === "=") onButton("zoom-in");
    else if (key === "-") onButton("zoom-out");
    else if (key === "0") onButton("zoom-fit");
    else handled = false;
    if (handled) event.preventDefault();
  };
  document.addEventListener("keydown", onKey);
  brushInput.addEventListener("input", () => {
    ed.brush = Number(brushInput.value);
    refreshControls();
  });
  opacityInput.addEventListener("input", () => {
    ed.opacity = Number(opacityInput.value) / 100;
    refreshControls();
  });
  if (window.ResizeObserver) new ResizeObserver(() => ed.fit && layout()).observe(viewport);

  // --- new data from Python -------------------------------------------------------------------------
  ed.update = (data) => {
    if (!data.image) return;
    const size = data.width * data.height;
    const newImage = data.image !== ed.image;
    if (newImage) {
      ed.image = data.image;
      ed.width = data.width;
      ed.height = data.height;
      ed.undo = [];
      ed.redo = [];
      ed.polygon = [];
      ed.strokes = new Uint8Array(size);
      ed.revision = null;
      ed.savedAck = data.saved;
      maskCanvas.width = data.width;
      maskCanvas.height = data.height;
      overlay = maskCtx.createImageData(data.width, data.height);
      root.dataset.ready = "";
      if (!["photo", "mask", "start", "gt"].every((name) => name in data)) {
        // A new mount of the editor on a rerun that sent only what changed: ask for everything.
        ed.image = null;
        if (ed.send) ed.send("event", { action: "resend", image: data.image });
        return;
      }
      photo.src = data.photo;
      // decode() resolves once the photo can be painted: "ready" then means photo and mask are both drawn.
      photo.decode().then(() => {
        if (ed.image === data.image) root.dataset.ready = `${data.image}@${ed.revision}`;
      }, () => setStatus("The photo could not be decoded by the browser.", "error"));
      layout();
    }
    const replaced = data.revision !== ed.revision && "mask" in data;
    if (replaced) {
      if (!newImage) snapshot(); // a tool result or a reload stays undoable
      ed.labels = rleDecode(data.mask, size);
      ed.revision = data.revision;
      ed.dirty = !!data.dirty;
      if (!newImage && ed.dirty) scheduleDraft(); // a tool's result is an unsaved edit too
      if (!newImage && photo.complete && photo.naturalWidth) root.dataset.ready = `${data.image}@${data.revision}`;
    }
    // The reference masks come only when they changed: most reruns (a save, a status) leave them as they were.
    const hadPreview = !!ed.preview;
    if ("start" in data) {
      ed.start = rleDecode(data.start, size);
      ed.startPrint = fingerprint(data.start);
    }
    if ("gt" in data) ed.gt = data.gt ? rleDecode(data.gt, size) : null;
    ed.preview = data.preview ? rleDecode(data.preview, size) : null;
    const redraw = newImage || replaced || hadPreview || !!ed.preview;
    if (data.saved !== ed.savedAck) {
      ed.savedAck = data.saved;
      if (ed.editGen === ed.sentGen) {
        ed.dirty = false;
        dropDraft();
      }
    }
    const restored = newImage && replaced && !ed.dirty && restoreDraft();
    root.dataset.savedVersion = data.version == null ? "" : String(data.version);
    banner.textContent = ed.preview ? `${data.preview_label || "Preview"}: accept or reject it above the editor ` +
      "(painting is paused meanwhile)." : "";
    banner.style.display = ed.preview ? "block" : "none";
    position.textContent = data.position || "";
    prevButton.disabled = !data.has_prev;
    nextButton.disabled = !data.has_next;
    if (redraw || restored) redrawAll();
    if (!restored) setStatus(data.status || "", data.status_kind || "");
    refreshControls();
    updateReadout();
  };
  return ed;
}
