#pragma once
// The web page of `finch serve` (GET /): one self-contained HTML file compiled into the
// binary, no external requests. A person drops or picks a photo and sees the top-5 classes,
// the Grad-CAM overlay with its box and, with a gallery, the most similar items.

namespace finch::serve {

extern const char* const kIndexHtml;

}  // namespace finch::serve
