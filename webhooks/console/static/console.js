// The console's only script: refresh a live fragment, and pop the routed call's card.
function refreshEvery(id, ms) {
  const box = document.getElementById(id);
  setInterval(async () => {
    try {
      const r = await fetch(box.dataset.src, {credentials: "same-origin"});
      if (r.ok) box.innerHTML = await r.text();
    } catch (e) { /* offline for a moment: keep what is shown */ }
  }, ms);
}

function watchCurrentCall(id, statusId, ms) {
  const box = document.getElementById(id);
  const status = document.getElementById(statusId);
  setInterval(async () => {
    try {
      const r = await fetch(box.dataset.src, {credentials: "same-origin"});
      if (!r.ok) return;
      const now = await r.json();
      status.textContent = now.status;
      status.className = "status " + now.status;
      // A new call replaces the panel; when the call ends the card stays for wrap-up notes.
      if (now.call_sid && now.call_sid !== box.dataset.call) {
        box.innerHTML = now.html;
        box.dataset.call = now.call_sid;
      }
    } catch (e) { /* try again on the next tick */ }
  }, ms);
}
