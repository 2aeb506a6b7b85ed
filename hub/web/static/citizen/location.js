// "Use my location" and the pin map on a form's location field: progressive enhancement.
// Without JavaScript, or in a browser without geolocation, the field stays as it is (address,
// or coordinates typed by hand). With them, a button asks the browser for the position (the
// browser asks the citizen) and fills the latitude and longitude. When the city runs its own
// tile server (`[citizen] map_tiles_url`), a small map with a pin at its centre is shown too:
// dragging it, clicking a spot or the arrow keys move the place under the pin, + and - zoom,
// and the coordinates follow. No map library, no third party: tiles come from the city's
// server only. Texts come translated in the field's data attributes.

const DIGITS = 6; // about 10 cm: more than a phone knows, less than the field allows

function announce(status, text) {
  status.textContent = "";
  // A fresh text node is announced even when the same message repeats.
  window.setTimeout(() => { status.textContent = text; }, 50);
}

const TILE = 256;
const STEP = 48; // pixels an arrow key moves the map (four times that with Shift)

function project(lat, lon, zoom) {
  const size = TILE * 2 ** zoom;
  const sin = Math.sin((lat * Math.PI) / 180);
  return { x: ((lon + 180) / 360) * size, y: (0.5 - Math.log((1 + sin) / (1 - sin)) / (4 * Math.PI)) * size };
}

function unproject(x, y, zoom) {
  const size = TILE * 2 ** zoom;
  const lon = (((x / size) * 360 + 540) % 360) - 180;
  const lat = (180 / Math.PI) * Math.atan(Math.sinh(Math.PI - (2 * Math.PI * y) / size));
  return { lat, lon };
}

function pinMap(box, lat, long, details) {
  const view = box.querySelector(".pin-map");
  const template = box.dataset.tiles;
  let zoom = Number(box.dataset.zoom);
  let [startLat, startLon] = box.dataset.center.split(",").map(Number);
  const typed = [parseFloat(lat.value), parseFloat(long.value)];
  if (typed.every(Number.isFinite)) [startLat, startLon] = typed;
  let center = project(startLat, startLon, zoom);
  const layer = document.createElement("div");
  layer.className = "tiles";
  const pin = document.createElement("div");
  pin.className = "pin";
  const status = document.createElement("p");
  status.className = "visually-hidden";
  status.setAttribute("role", "status");
  view.append(layer, pin);
  box.append(status);
  let said = 0;

  function draw() {
    const width = view.clientWidth, height = view.clientHeight, count = 2 ** zoom;
    const left = center.x - width / 2, top = center.y - height / 2;
    const tiles = [];
    for (let ty = Math.floor(top / TILE); ty <= Math.floor((top + height) / TILE); ty += 1) {
      if (ty < 0 || ty >= count) continue;
      for (let tx = Math.floor(left / TILE); tx <= Math.floor((left + width) / TILE); tx += 1) {
        const img = document.createElement("img");
        img.alt = "";
        img.draggable = false;
        img.width = TILE;
        img.height = TILE;
        const x = ((tx % count) + count) % count;
        img.src = template.replace("{z}", zoom).replace("{x}", x).replace("{y}", ty);
        img.style.left = `${tx * TILE - left}px`;
        img.style.top = `${ty * TILE - top}px`;
        tiles.push(img);
      }
    }
    layer.replaceChildren(...tiles);
  }

  function fill() {
    const here = unproject(center.x, center.y, zoom);
    lat.value = here.lat.toFixed(DIGITS);
    long.value = here.lon.toFixed(DIGITS);
    details.open = true;
    window.clearTimeout(said);
    // Said once the pin rests, not at every step of a drag or a held key.
    said = window.setTimeout(() => announce(status, `${details.dataset.pinned} ${lat.value}, ${long.value}`), 600);
  }

  function move(dx, dy) {
    const size = TILE * 2 ** zoom;
    center = { x: center.x + dx, y: Math.min(size, Math.max(0, center.y + dy)) };
    draw();
    fill();
  }

  function setZoom(next) {
    if (next < 1 || next > 19) return;
    const here = unproject(center.x, center.y, zoom);
    zoom = next;
    center = project(here.lat, here.lon, zoom);
    draw();
  }

  const keys = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  view.addEventListener("keydown", (event) => {
    if (event.key in keys) {
      const [dx, dy] = keys[event.key];
      const step = event.shiftKey ? STEP * 4 : STEP;
      move(dx * step, dy * step);
    } else if (event.key === "+" || event.key === "=") {
      setZoom(zoom + 1);
    } else if (event.key === "-") {
      setZoom(zoom - 1);
    } else {
      return;
    }
    event.preventDefault();
  });

  let drag = null;
  view.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX, y: event.clientY, moved: 0 };
    view.setPointerCapture(event.pointerId);
  });
  view.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    drag = { x: event.clientX, y: event.clientY, moved: drag.moved + Math.abs(dx) + Math.abs(dy) };
    move(-dx, -dy);
  });
  view.addEventListener("pointerup", (event) => {
    if (drag && drag.moved < 4) { // a click or a tap: that spot goes under the pin
      const rect = view.getBoundingClientRect();
      move(event.clientX - rect.left - rect.width / 2, event.clientY - rect.top - rect.height / 2);
    }
    drag = null;
  });
  for (const input of [lat, long]) {
    input.addEventListener("change", () => {
      const typedNow = [parseFloat(lat.value), parseFloat(long.value)];
      if (typedNow.every(Number.isFinite)) { center = project(typedNow[0], typedNow[1], zoom); draw(); }
    });
  }
  box.hidden = false;
  draw();
  return { recenter(newLat, newLon) { center = project(newLat, newLon, zoom); draw(); } };
}

function enhance(details) {
  const [lat, long] = details.querySelectorAll('input[name$=".lat"], input[name$=".long"]');
  if (!lat || !long) return;
  const box = details.parentElement.querySelector(".pin-map-box[data-tiles]");
  const map = box ? pinMap(box, lat, long, details) : null;
  if (!("geolocation" in navigator)) return;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "locate";
  button.textContent = details.dataset.locate;
  const status = document.createElement("p");
  status.className = "hint";
  status.setAttribute("role", "status");
  details.before(button, status);
  button.addEventListener("click", () => {
    button.disabled = true;
    announce(status, details.dataset.locating);
    navigator.geolocation.getCurrentPosition((position) => {
      lat.value = position.coords.latitude.toFixed(DIGITS);
      long.value = position.coords.longitude.toFixed(DIGITS);
      map?.recenter(position.coords.latitude, position.coords.longitude);
      details.open = true;
      button.disabled = false;
      announce(status, details.dataset.located);
    }, () => {
      button.disabled = false;
      announce(status, details.dataset.failed);
    }, { enableHighAccuracy: true, timeout: 20000, maximumAge: 60000 });
  });
}

document.querySelectorAll("details.coordinates[data-locate]").forEach(enhance);
