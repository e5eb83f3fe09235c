#include "msam/model/presets.h"

namespace msam::model {

MSAMConfig tiny_cpu_config() {
  MSAMConfig c;
  c.encoder.img_size = 64;
  c.encoder.patch_size = 8;
  c.encoder.embed_dim = 96;
  c.encoder.depth = 2;
  c.encoder.num_heads = 4;
  c.encoder.global_attn_indexes = {1};
  c.encoder.out_chans = 96;
  c.encoder.lora_rank = 4;
  c.adapter_heads = 2;
  c.decoder_heads = 4;
  c.decoder_mlp_dim = 256;
  return c;
}

}  // namespace msam::model
