// msam convert IN.pth OUT.safetensors: import a reference PyTorch checkpoint.
#include <iostream>
#include <memory>
#include <string>

#include "command.h"
#include "msam/io/pth_import.h"

namespace msam::cli {
namespace {

const Register kConvert(
    "convert",
    "Convert a reference PyTorch checkpoint (.pth from SAM-Med3D or the M-SAM trainer) to "
    "msam safetensors; nothing in the .pth is executed",
    [](CLI::App& app) {
      auto in = std::make_shared<std::string>();
      auto out = std::make_shared<std::string>();
      app.add_option("input", *in, "checkpoint written by torch.save (zip format)")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("output", *out, "safetensors file to write")->required();
      return [in, out]() {
        const io::ConvertSummary s = io::convert_checkpoint(*in, *out);
        if (s.already_safetensors) {
          std::cout << *in << " is already a safetensors file (" << s.tensors << " tensors, "
                    << s.parameters << " values); nothing written\n";
          return 0;
        }
        std::cout << "read " << *in << ": " << s.layout << " layout, " << s.tensors
                  << " tensors, " << s.parameters << " values\n";
        for (const char* key : {"epoch", "best_loss", "best_dice"})
          if (s.info.contains(key)) std::cout << "  " << key << ": " << s.info[key].dump() << "\n";
        std::cout << "wrote " << *out << "\n";
        return 0;
      };
    });

}  // namespace
}  // namespace msam::cli
