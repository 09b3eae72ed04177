// Sign-in: a bearer token pasted into the form, kept in the tab's sessionStorage, or the session cookie that the
// upgrade and the fetches carry by themselves. Sign-out forgets the token.
import { $ } from "./page.js";

const TOKEN_KEY = "locstream.token";

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** A fetch with the stored token, or with the cookie when there is none. */
export function authorizedFetch(url) {
  const token = storedToken();
  return fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {}, credentials: "same-origin" });
}

/** Wires the form: `start(token)` once signed in (null: the cookie), `stop()` on sign-out. Returns the sign-in to
 * run at start-up (a token stored in this tab signs in again). */
export function bindSignIn({ start, stop }) {
  function signIn() {
    const token = storedToken();
    $("login").hidden = Boolean(token);
    if (token) start(token);
  }
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    signIn();
  });
  $("use-cookie").addEventListener("click", () => {
    $("login").hidden = true;
    start(null);
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    stop();
    $("login").hidden = false;
  });
  return signIn;
}
