// What the operator reads for a live player's state and reason codes (live.js).
import { t } from "./i18n.js";

export function videoReason(reason) {
  switch (reason) {
    case "camera-auth":
      return t("video.reason_camera_auth");
    case "codec-unsupported":
      return t("video.reason_codec");
    case "camera-offline":
      return t("video.reason_offline");
    case "no-stream":
      return t("video.reason_no_stream");
    case "no-access":
      return t("video.reason_no_access");
    case "refused":
      return t("video.reason_refused");
    case "unsupported-browser":
      return t("video.reason_browser");
    default:
      return t("video.reason_error");
  }
}

export function videoState(state) {
  switch (state) {
    case "live":
      return t("video.live");
    case "stalled":
      return t("video.stalled");
    case "reconnecting":
      return t("video.reconnecting");
    case "unavailable":
      return t("video.unavailable");
    default:
      return t("video.connecting");
  }
}
