/** The SDK version reported in Describe. */
export const SDK_VERSION = "0.1.0";
