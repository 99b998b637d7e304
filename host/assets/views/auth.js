/* The token form: shown when a read is refused for its token (401: the gateway has a read
 * token; 403: the one sent is wrong), once, however many requests were refused; hidden
 * again as soon as a read succeeds. The token typed is kept for this tab (api.js says why
 * not longer) and sent with every request from then on. */
import { auth, describeFailure, useReadToken } from '../api.js';
import { $, setText } from '../dom.js';

/** Wires the form; `onToken` is called after a token was given (reload what failed). */
export function initAuth(onToken) {
  const form = $('#auth');
  const input = $('#auth-token');
  const error = $('#auth-error');
  const show = () => {
    const asking = auth.state === 'needed' || auth.state === 'wrong';
    const opening = asking && form.hidden;
    form.hidden = !asking;
    error.hidden = auth.state !== 'wrong';
    if (auth.state === 'wrong') {
      setText(error, 'The gateway refused this token: ' + describeFailure('auth', auth.error) + '. Check it and enter it again.');
    }
    if (opening) input.focus();
  };
  auth.onChange = show;
  show();
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    input.value = '';
    if (!useReadToken(value)) {
      error.hidden = false;
      setText(error, 'This browser does not let the page keep the token (sessionStorage is off).');
      return;
    }
    onToken();
  });
}
