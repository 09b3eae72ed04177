// Types of locstream-client.js (docs/client.md).

export const FEED_PATH: string;
export const POLL_PATH: string;

export interface TechnicianLocation {
  technician_id: string;
  technician_name: string;
  latitude: number;
  longitude: number;
  last_update: string; // ISO 8601
  status: string;
  stale?: boolean; // offline, as the derived facts say (technician_offline), until a newer fix or technician_online
  offline_since?: string; // only when stale: its last fix's device time
  offline_reason?: "silent" | "tracking_stopped";
  motion?: "stopped" | "moving"; // from its latest stop or trip, once it has one
  motion_since?: string;
  backfill?: boolean;
  // Only when known (the fix carried them; battery from a device app's report):
  accuracy_meters?: number;
  speed_kmh?: number;
  heading?: number;
  battery_percent?: number;
}

export interface Filter {
  bbox?: [west: number, south: number, east: number, north: number];
  technician_ids?: string[];
  status?: string[];
  presence?: ("online" | "offline")[];
}

export interface Geofence {
  geofence_id: string;
  name: string | null;
  job_id: string | null;
  title: string | null;
  status: string | null;
  assigned_technician_id: string | null;
  geometry:
    | { type: "Circle"; latitude: number; longitude: number; radius_meters: number }
    | { type: "Polygon"; coordinates: number[][][] }; // GeoJSON: [longitude, latitude], one ring
  updated_at: string;
}

export interface GeofenceEvent {
  technician_id: string;
  technician_name: string;
  geofence_id: string;
  job_id: string | null;
  event_type: "enter" | "exit";
  timestamp: string; // the crossing fix's device time
  distance_meters: number;
  message: string; // "Ada Obi arrived at Cabinet 12"
}

// The projector's reports (docs/stops-and-trips.md, docs/online-offline.md): rows of GET
// /api/v1/field-service/reports/stops, /reports/trips and /reports/offline.
export interface StopRow {
  technician_id: string;
  started_at: string;
  ended_at: string | null; // null: still there
  duration_seconds: number;
  latitude: number;
  longitude: number;
  fixes: number;
  geofence_id: string | null; // the job site whose fence holds the stop
  job_id: string | null;
}

export interface TripRow {
  technician_id: string;
  started_at: string;
  ended_at: string | null; // null: still under way
  duration_seconds: number;
  distance_meters: number;
  start_latitude: number;
  start_longitude: number;
  end_latitude: number | null;
  end_longitude: number | null;
  fixes: number;
}

export interface OfflineRow {
  technician_id: string;
  last_seen_at: string;
  back_at: string | null; // null: still offline
  silent_seconds: number;
  reason: "silent" | "tracking_stopped"; // or the app said it stopped tracking (docs/online-offline.md)
}

export type ServerMessage =
  | { type: "connected"; connection_id: string; tenant_id: string; protocol: 1 | 2 }
  | { type: "initial_state"; data: TechnicianLocation[]; cursor: string; resumed?: boolean; filter?: Filter }
  | { type: "resumed"; cursor: string; missed: number }
  | { type: "location_update"; data: TechnicianLocation; cursor: string }
  | { type: "location_batch"; data: TechnicianLocation[]; cursor: string }
  | { type: "technician_removed"; technician_id: string }
  | { type: "replay_done"; events: number }
  | { type: "error"; message: string }
  | { type: "pong" }
  | { type: "geofence_event"; data: GeofenceEvent }
  | { type: "geofence_updated"; data: Geofence }
  | { type: "geofence_removed"; data: { geofence_id: string } };

export interface MapState {
  technicians: Map<string, TechnicianLocation>;
  cursor: string | null;
}

/** Merges in place; the ids changed, null when the whole map was replaced, [] when nothing changed. */
export function mergeMessage(technicians: Map<string, TechnicianLocation>, message: ServerMessage): string[] | null;

export function applyMessage(state: MapState, message: ServerMessage): MapState;

export function backoffDelay(
  attempt: number,
  options?: { base?: number; max?: number; min?: number; random?: () => number },
): number;

export interface ClientOptions {
  url?: string | null;
  apiBase?: string;
  token?: string | (() => string | null) | null;
  enabled?: boolean;
  autoReconnect?: boolean;
  reconnectInterval?: number;
  maxReconnectInterval?: number;
  pingInterval?: number;
  protocol?: 1 | 2;
  pollAfterFailures?: number;
  pollInterval?: number;
  query?: string;
  resume?: boolean;
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
  random?: () => number;
  onConnect?: (() => void) | null;
  onDisconnect?: ((event: CloseEvent) => void) | null;
  onError?: ((event: Event) => void) | null;
  onMessage?: ((message: ServerMessage) => void) | null;
}

export type Mode = "live" | "connecting" | "polling" | "disconnected";

/** Events: "change" (CustomEvent, detail.changed: the ids changed or null for all), "status" (connection state changed), "message" (CustomEvent, every message). */
export class LocstreamClient extends EventTarget {
  constructor(options?: ClientOptions);
  readonly options: Required<ClientOptions>;
  technicians: Map<string, TechnicianLocation>; // mutated in place
  version: number; // counts the changes of `technicians`
  cursor: string | null;
  isConnected: boolean;
  isConnecting: boolean;
  isPolling: boolean;
  error: string | null;
  filter: Filter | null;
  updatesReceived: number;
  readonly mode: Mode;
  connect(): void;
  pollOnly(): void;
  reconnect(): void;
  close(): void;
  subscribe(filter: Filter | null): void;
  /** A paced replay's control, or on the live feed {type: "fences", bbox}: the tenant's fences in that view. */
  sendControl(
    message:
      | { type: "pause" | "resume" | "seek" | "speed"; to?: string; speed?: number }
      | { type: "fences"; bbox: [number, number, number, number] },
  ): void;
}
