// DeepTrust review: thumbnails revealed on click, a click on a window seeks the player, and
// keyboard shortcuts for the common actions. No build step; htmx does the requests.
"use strict";

document.addEventListener("click", (event) => {
  const thumb = event.target.closest("img.thumb");
  if (thumb) {
    thumb.classList.toggle("revealed");
    return;
  }
  const win = event.target.closest("[data-seek]");
  const player = document.getElementById("player");
  if (win && player) {
    player.currentTime = parseFloat(win.dataset.seek);
  }
});

function markPlaying() {
  const player = document.getElementById("player");
  if (!player) return;
  const at = player.currentTime;
  document.querySelectorAll(".timeline .window").forEach((win) => {
    const inside = at >= parseFloat(win.dataset.seek) && at < parseFloat(win.dataset.end);
    win.classList.toggle("playing", inside);
  });
  const head = document.querySelector(".timeline .playhead");
  const duration = player.duration;
  if (head && duration > 0) head.style.left = `${(100 * at) / duration}%`;
}
document.addEventListener("timeupdate", markPlaying, true);
document.addEventListener("seeked", markPlaying, true);

const DECISION_KEYS = { c: "confirmed", d: "dismissed", e: "escalated" };

document.addEventListener("keydown", (event) => {
  const typing = event.target.closest("textarea, input, select");
  if (typing) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.form) {
      event.preventDefault();
      event.target.form.requestSubmit();
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "k") {
    document.querySelector("button.claim")?.click();
  } else if (event.key in DECISION_KEYS) {
    const choice = document.querySelector(`input[name=decision][value=${DECISION_KEYS[event.key]}]`);
    if (choice) {
      event.preventDefault();
      choice.checked = true;
      document.getElementById("note")?.focus();
    }
  } else if (event.key === "q") {
    window.location.href = "/";
  }
});
