{
  "targets": [
    {
      "target_name": "spapr_tce_native",
      "sources": ["src/native/addon.cc", "src/native/host_memory.cc", "src/native/huge_pages.cc", "src/native/crc32.cc", "src/native/zero_scan.cc", "src/native/engine.cc", "src/native/engine_binding.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "src/native"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["-std=c++20", "-O3", "-Wall", "-Wextra"],
      "cflags_cc!": ["-std=gnu++17", "-std=gnu++14"]
    }
  ]
}
