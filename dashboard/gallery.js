// PetSeg thumbnail grid: a Streamlit components-v2 module (see dashboard/gallery.py for the Python side).
//
// The whole page of thumbnails is one element: one message, one layout, no request per image. Each tile is a
// real link to its Compare view (open in a new tab works); a plain click is handed to Python instead, which
// switches page inside the session so the Browse filter and sort stay with it.

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let grid = parentElement.querySelector(".petseg-gallery");
  if (!grid) {
    grid = document.createElement("div");
    grid.className = "petseg-gallery";
    grid.addEventListener("click", (event) => {
      const link = event.target.closest("a[data-image]");
      if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      grid.__send("open", link.dataset.image);
    });
    parentElement.appendChild(grid);
  }
  grid.__send = setTriggerValue;
  const tiles = (data && data.tiles) || [];
  const signature = JSON.stringify(tiles.map((t) => [t.id, t.src.length, t.badges]));
  if (grid.__signature === signature) return;
  grid.__signature = signature;
  grid.style.setProperty("--petseg-columns", String((data && data.columns) || 6));
  grid.replaceChildren(...tiles.map(tile));
}

function tile(t) {
  const figure = document.createElement("figure");
  const link = document.createElement("a");
  link.className = "petseg-tile";
  link.href = t.href;
  link.dataset.image = t.id;
  const img = document.createElement("img");
  img.src = t.src;
  img.alt = t.id;
  img.decoding = "async";
  const name = document.createElement("span");
  name.className = "petseg-id";
  name.textContent = t.id;
  link.append(img, name);
  const caption = document.createElement("figcaption");
  for (const [text, tone] of t.badges) {
    const badge = document.createElement("span");
    badge.className = `petseg-badge petseg-${tone}`;
    badge.textContent = text;
    caption.append(badge);
  }
  figure.append(link, caption);
  return figure;
}
