// The profile page. Every text that comes from data or from a person (titles, profiles, user ids,
// messages) is put in the page with textContent, never as HTML: markup in a profile shows as text.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  status: null,      // /api/status once the model is ready
  userId: null,      // null: cold start
  original: null,    // the first profile ranked for this person (Reset goes back to it)
  current: null,     // the last ranking shown (/api/recommend's answer)
  undo: [],          // profiles ranked before the current one
  busy: false,
};

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error("The page server does not answer: is `lpt profile-page` still running?");
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.message || `The server answered HTTP ${response.status}.`);
  return answer;
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

function setBusy(busy) {
  state.busy = busy;
  for (const control of document.querySelectorAll("#editor-form button, #editor-form select, #user-form button, #profiles-section button")) {
    control.disabled = busy;
  }
  $("results-section").setAttribute("aria-busy", String(busy));
  if (!busy) updateButtons();
}

function updateButtons() {
  $("undo").disabled = state.undo.length === 0;
  $("reset").disabled = state.original === null;
  $("export").disabled = state.current === null;
  $("write-profile").disabled = state.userId === null;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : element("td", cell));
  return tr;
}

// --- start-up -----------------------------------------------------------------------------------

async function waitForModel() {
  try {
    const status = await api("/api/status");
    if (!status.ready) {
      if (status.error) {
        $("model-status").textContent = "The model could not be loaded.";
        showMessage(`The model could not be loaded: ${status.error}`);
        return;
      }
      setTimeout(waitForModel, 500);
      return;
    }
    state.status = status;
    $("model-status").textContent = `Model: ${status.model} · ${status.model_uri} · variant ${status.variant ?? "unknown"}`;
    $("k").textContent = status.k;
    $("trained").querySelector(".variant").textContent = status.variant ?? "";
    const users = $("user-ids");
    for (const id of status.users) users.append(new Option(id, id));
    const genres = $("genre");
    for (const genre of status.genres) genres.append(new Option(genre, genre));
    $("notes").textContent = status.users.length
      ? `${status.users.length} users of the test split to pick from, or type any user id of the split.`
      : status.notes.join(" ");
    document.body.classList.add("ready");
  } catch (error) {
    showMessage(error.message);
    setTimeout(waitForModel, 2000);
  }
}

// --- a person -----------------------------------------------------------------------------------

async function showUser(userId) {
  showMessage("");
  setBusy(true);
  let person;
  try {
    person = await api(`/api/users/${encodeURIComponent(userId)}`);
  } catch (error) {
    showMessage(error.message);
    return;
  } finally {
    setBusy(false);
  }
  startOver(person.user_id);
  renderPerson(person);
  const profile = person.trained_profile ?? person.zero_shot_profile;
  if (profile === null) await writeProfile();
  else await rank(profile);
}

function startOver(userId) {
  state.userId = userId;
  state.original = null;
  state.current = null;
  state.undo = [];
  $("results-section").hidden = true;
  updateButtons();
}

function renderPerson(person) {
  const body = $("history").querySelector("tbody");
  body.replaceChildren();
  person.history.forEach((entry, position) => {
    body.append(row([position + 1, entry.item.title, entry.item.genres.join(", "), entry.rating ?? "–"]));
  });
  $("history-heading").firstChild.textContent = `History of user ${person.user_id} (${person.split} split), ${person.history.length} items `;
  $("target-line").textContent = person.target
    ? `Target (the next item in the split): ${person.target.title}. It is marked in the list when it is there.`
    : "This example has no target item.";
  for (const [id, text] of [["zero-shot", person.zero_shot_profile], ["trained", person.trained_profile]]) {
    const box = $(id);
    box.querySelector(".profile-text").textContent = text ?? "(none stored for this user)";
    box.querySelector(".use-profile").hidden = text === null;
    box.dataset.profile = text ?? "";
  }
  $("history-section").hidden = false;
  $("profiles-section").hidden = false;
}

function coldStart() {
  showMessage("");
  startOver(null);
  $("history-section").hidden = true;
  $("profiles-section").hidden = true;
  $("user-id").value = "";
  $("editor").value = "";
  updateWordCount();
  $("editor").focus();
  $("results-summary").textContent = "";
  showMessage("Cold start: write what the person likes, then Re-rank. The list comes from the text alone.");
}

// --- ranking ------------------------------------------------------------------------------------

// Rank `profile` (null: the model writes one from the history) after an optional quick edit;
// whether the list came (a refusal is shown as a message).
async function rank(profile, edit = null, {remember = true} = {}) {
  showMessage("");
  setBusy(true);
  try {
    const ranking = await api("/api/recommend", {
      profile, user_id: state.userId, edit,
      previous_item_ids: state.current ? state.current.items.map((i) => i.item.item_id) : null,
    });
    if (state.current && remember) state.undo.push(state.current.profile);
    if (state.original === null) state.original = ranking.profile;
    state.current = ranking;
    $("editor").value = ranking.profile;
    updateWordCount();
    renderRanking(ranking);
    return true;
  } catch (error) {
    showMessage(error.message);
    return false;
  } finally {
    setBusy(false);
    // How many rankings were answered (or refused): lets a script tell when this one is done.
    document.body.dataset.answered = String(Number(document.body.dataset.answered ?? 0) + 1);
  }
}

async function writeProfile() {
  $("writing").hidden = false;
  const progress = $("write-progress");
  const expected = state.status.write_seconds;
  const started = performance.now();
  if (!expected) progress.removeAttribute("value");  // indeterminate until one write was timed
  const timer = setInterval(() => {
    const elapsed = (performance.now() - started) / 1000;
    if (expected) progress.value = Math.min(0.95, elapsed / expected);
    $("write-elapsed").textContent = `${elapsed.toFixed(1)} s` + (expected ? ` (the last one took ${expected.toFixed(1)} s)` : "");
  }, 100);
  try {
    await rank(null);
    if (state.current && state.current.profile_written) state.status.write_seconds = state.current.seconds;
  } finally {
    clearInterval(timer);
    $("writing").hidden = true;
  }
}

function renderRanking(ranking) {
  const body = $("results").querySelector("tbody");
  body.replaceChildren();
  for (const entry of ranking.items) {
    const title = element("td", entry.item.title);
    if (entry.is_target) title.append(" ", element("strong", "★ target", "target-badge"));
    const tr = row([entry.rank, title, entry.item.genres.join(", "), entry.score.toFixed(3), changeCell(entry, ranking.compared)]);
    if (entry.is_target) tr.className = "target";
    body.append(tr);
  }
  const out = $("moved-out");
  out.replaceChildren(...ranking.moved_out.map((m) => element("li", `${m.item.title} (was ${m.previous_rank})`)));
  $("moved-out-block").hidden = ranking.moved_out.length === 0;
  $("results-summary").textContent = summary(ranking);
  $("genre-counts").textContent = genreCounts(ranking.items);
  $("export-json").textContent = JSON.stringify(ranking.export, null, 2);
  $("results-section").hidden = false;
}

function changeCell(entry, compared) {
  if (!compared) return element("td", "");
  if (entry.moved_in) return element("td", "new", "moved-in");
  if (entry.places_up > 0) return withLabel(element("td", `▲ ${entry.places_up}`, "up"), `up ${entry.places_up}`);
  if (entry.places_up < 0) return withLabel(element("td", `▼ ${-entry.places_up}`, "down"), `down ${-entry.places_up}`);
  return withLabel(element("td", "="), "same place");
}

function withLabel(cell, label) {
  cell.setAttribute("aria-label", label);
  cell.title = label;
  return cell;
}

function summary(ranking) {
  const seconds = `${(ranking.seconds * 1000).toFixed(0)} ms`;
  const source = ranking.profile_written ? `profile written from the history and ranked in ${seconds}` : `ranked in ${seconds}`;
  if (!ranking.compared) return `${ranking.items.length} items, ${source}.`;
  const movedIn = ranking.items.filter((i) => i.moved_in).length;
  const moved = ranking.items.filter((i) => !i.moved_in && i.places_up !== 0).length;
  return `${source}: ${movedIn} moved in, ${ranking.moved_out.length} moved out, ${moved} changed places.`;
}

function genreCounts(items) {
  const counts = new Map();
  for (const entry of items) for (const genre of entry.item.genres) counts.set(genre, (counts.get(genre) ?? 0) + 1);
  const sorted = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return "Genres in the list: " + sorted.map(([genre, n]) => `${genre} ${n}`).join(", ");
}

function exportJson() {
  const blob = new Blob([JSON.stringify(state.current.export, null, 2)], {type: "application/json"});
  const link = element("a");
  link.href = URL.createObjectURL(blob);
  link.download = `profile-${state.userId ?? "cold-start"}.json`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

function updateWordCount() {
  const text = $("editor").value;
  const words = text.trim() ? text.trim().split(/\s+/).length : 0;
  $("word-count").textContent = `${words.toLocaleString("en")} words, ${text.length.toLocaleString("en")} characters`;
}

// --- wiring -------------------------------------------------------------------------------------

function wire() {
  $("user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("user-id").value.trim();
    if (id) showUser(id);
  });
  $("random-user").addEventListener("click", () => {
    const users = state.status ? state.status.users : [];
    if (!users.length) return showMessage("No test-split users are materialised: run `make demo`, or use Cold start.");
    const id = users[Math.floor(Math.random() * users.length)];
    $("user-id").value = id;
    showUser(id);
  });
  $("cold-start").addEventListener("click", coldStart);
  $("write-profile").addEventListener("click", writeProfile);
  for (const box of document.querySelectorAll(".stored")) {
    box.querySelector(".use-profile").addEventListener("click", () => rank(box.dataset.profile));
  }
  $("editor-form").addEventListener("submit", (event) => {
    event.preventDefault();
    rank($("editor").value);
  });
  $("editor").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      if (!state.busy) rank($("editor").value);
    }
  });
  $("editor").addEventListener("input", updateWordCount);
  for (const button of document.querySelectorAll("[data-edit]")) {
    button.addEventListener("click", () => rank($("editor").value, {kind: button.dataset.edit, genre: $("genre").value}));
  }
  $("undo").addEventListener("click", async () => {
    const profile = state.undo.pop();
    if (!(await rank(profile, null, {remember: false}))) state.undo.push(profile);
  });
  $("reset").addEventListener("click", () => rank(state.original));
  $("export").addEventListener("click", exportJson);
  updateWordCount();
  updateButtons();
  waitForModel();
}

document.addEventListener("DOMContentLoaded", wire);
