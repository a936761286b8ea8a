// The contract of issue 14 (docs/lab.md): what the Jupyter server extension of jupyterhub-hpc
// answers under the server's base URL. Only these four routes are used.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IJob {
  id: string;
  state: 'pending' | 'running' | 'ended' | 'unknown';
  native_state: string | null;
  reason: string | null;
  reason_text: string | null;
  expected_start: string | null;
  start_time: string | null;
  end_time: string | null;
  time_limit_seconds: number | null;
  partition: string | null;
  nodes: string[];
  cores: number | null;
  memory_bytes: number | null;
  gpus: number | null;
}

export interface IIdle {
  timeout_seconds: number;
  warn_seconds: number;
  last_activity: string | null;
  stops_at: string | null;
}

export interface IMaintenance {
  name: string;
  start: string | null;
  end: string | null;
  partitions: string[];
  nodes: string | null;
  crosses_job: boolean;
}

export interface ICard {
  version: number;
  now: string;
  poll_seconds: number;
  user: string;
  server_name: string;
  backend: string;
  cluster: string | null;
  profile: string | null;
  job: IJob | null;
  walltime: { warn_seconds: number[]; autosave_seconds: number | null };
  idle: IIdle | null;
  maintenance: IMaintenance[];
}

export interface IAnnouncement {
  id: string;
  title: string;
  body_html: string;
  severity: 'info' | 'warning' | 'error';
  starts: string | null;
  ends: string | null;
  dismissible: boolean;
  required: boolean;
  source: string;
}

/** An answer other than 2xx (the routes answer 404 outside a JupyterHub). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

const settings = ServerConnection.makeSettings();

/** A request to the server extension's routes (<base_url>jupyterhub-hpc/<path>); ApiError for non-2xx. */
export async function request(path: string, init: RequestInit = {}, query = ''): Promise<Response> {
  // makeRequest adds the XSRF header and the server's token/cookie auth
  const url = URLExt.join(settings.baseUrl, 'jupyterhub-hpc', path) + query;
  const response = await ServerConnection.makeRequest(url, init, settings);
  if (!response.ok) {
    let message = response.statusText;
    try {
      const body = await response.json();
      message = body.error ?? body.message ?? message; // ours say `error`, jupyter_server's `message`
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, message);
  }
  return response;
}

// Polls are not the user's activity: jupyter_server then leaves its last_activity alone, so
// an idle server (issue 14, idle policy) is still idle with a Lab tab open.
export const POLL = '?no_track_activity=1';

export async function fetchCard(): Promise<ICard> {
  return (await request('card', {}, POLL)).json();
}

export async function fetchAnnouncements(): Promise<IAnnouncement[]> {
  const body = await (await request('announcements', {}, POLL)).json();
  return Array.isArray(body.announcements) ? body.announcements : [];
}

export async function dismissAnnouncement(id: string): Promise<void> {
  await request(`announcements/${encodeURIComponent(id)}/dismiss`, { method: 'POST' });
}

export async function stopServer(): Promise<void> {
  await request('stop', { method: 'POST' });
}
