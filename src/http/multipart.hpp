#pragma once
// multipart/form-data bodies (RFC 7578): ComfyUI's /upload/image, CosyVoice's form fields.
#include <string>
#include <vector>

namespace gpuq::http {

struct FormPart {
  std::string name;          // the form field
  std::string value;         // text, or the file's bytes
  std::string filename;      // set for a file part
  std::string content_type;  // a file part's type; empty: application/octet-stream
};

struct FormBody {
  std::string content_type;  // "multipart/form-data; boundary=..."
  std::string body;
};

// A boundary that appears in no part's value.
FormBody EncodeForm(const std::vector<FormPart>& parts);

}  // namespace gpuq::http
